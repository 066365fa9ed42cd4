//! The number of waiting requests drawn into the tray icon. Panels that speak
//! StatusNotifierItem show the count as a label beside the icon; an XEmbed tray (the older
//! system tray protocol, still the one of many desktops) shows only the icon, so the count has
//! to be in its pixels: a red disc in the lower right corner with the number in white.

/// 3×5 pixel glyphs for 0–9 and "+", one row per byte (the three low bits, left to right).
const GLYPHS: [[u8; 5]; 11] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
    [0b000, 0b010, 0b111, 0b010, 0b000],
];

const RED: [u8; 4] = [0xc6, 0x28, 0x28, 0xff];
const WHITE: [u8; 4] = [0xff, 0xff, 0xff, 0xff];

/// `base` (RGBA, `width`×`height`) with `count` drawn on it; `count` 0 leaves it as it is.
/// Counts over 9 read "9+".
pub fn with_count(base: &[u8], width: u32, height: u32, count: usize) -> Vec<u8> {
    let mut out = base.to_vec();
    if count == 0 || width < 16 || height < 16 {
        return out;
    }
    let (w, h) = (width as i64, height as i64);
    let side = w.min(h);
    // The disc covers the lower right 60% of the icon.
    let radius = side * 3 / 10;
    let (cx, cy) = (w - radius - 1, h - radius - 1);
    let mut put = |x: i64, y: i64, color: [u8; 4]| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let at = ((y * w + x) * 4) as usize;
            out[at..at + 4].copy_from_slice(&color);
        }
    };
    for y in cy - radius..=cy + radius {
        for x in cx - radius..=cx + radius {
            if (x - cx).pow(2) + (y - cy).pow(2) <= radius.pow(2) {
                put(x, y, RED);
            }
        }
    }
    let glyphs: Vec<usize> = if count > 9 { vec![9, 10] } else { vec![count] };
    // Each glyph pixel is a `scale`-sized square; glyphs are one pixel apart.
    let scale = (radius * 2 / 7).max(1);
    let text_width = (glyphs.len() as i64 * 4 - 1) * scale;
    let (left, top) = (cx - text_width / 2, cy - 5 * scale / 2);
    for (i, glyph) in glyphs.iter().enumerate() {
        for (row, bits) in GLYPHS[*glyph].iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) != 0 {
                    let x0 = left + (i as i64 * 4 + col) * scale;
                    let y0 = top + row as i64 * scale;
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(x0 + dx, y0 + dy, WHITE);
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(image: &[u8], width: u32, x: u32, y: u32) -> [u8; 4] {
        let at = ((y * width + x) * 4) as usize;
        image[at..at + 4].try_into().expect("four bytes")
    }

    #[test]
    fn the_count_is_drawn_in_the_corner_and_nothing_for_zero() {
        let (w, h) = (64, 64);
        let base = vec![0x20u8; (w * h * 4) as usize];
        assert_eq!(with_count(&base, w, h, 0), base, "no count, no change");
        let one = with_count(&base, w, h, 1);
        let three = with_count(&base, w, h, 3);
        // The top left stays the icon; the disc's rim is red; the digits differ.
        assert_eq!(pixel(&one, w, 2, 2), [0x20; 4]);
        assert_eq!(pixel(&one, w, 44, 63), RED, "the bottom of the disc");
        assert_ne!(one, three);
        let whites = |img: &[u8]| img.chunks(4).filter(|p| *p == WHITE).count();
        assert!(
            whites(&one) > 0 && whites(&three) > whites(&one),
            "digits in white"
        );
        assert_ne!(
            with_count(&base, w, h, 12),
            with_count(&base, w, h, 9),
            "9+ reads apart from 9"
        );
        assert_eq!(
            with_count(&base, w, h, 12),
            with_count(&base, w, h, 40),
            "over nine: 9+"
        );
    }
}
