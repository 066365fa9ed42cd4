//! Sign latency per backend: median and p99 of 1,000 signatures each, with the software key
//! as the baseline, measured in one run. PKCS#11 runs against a fresh SoftHSM2 token, TPM
//! against a fresh swtpm on loopback (what CI has; real devices are slower, see BENCHMARKS.md).
//!
//! `cargo bench -p countersign-keys --bench sign`

use std::process::Command;
use std::time::{Duration, Instant};

use countersign_keys::pkcs11::{KeySelector, Pkcs11Config, Pkcs11Key, TokenSelector};
use countersign_keys::tpm::{TpmConfig, TpmKey};
use countersign_keys::{KeyError, PinRequest, Signer, SoftwareKey};
use countersign_testdevices::{SoftHsm, Swtpm};
use zeroize::Zeroizing;

const SIGNATURES: usize = 1_000;
const WARM_UP: usize = 20;
const CHILD: &str = "COUNTERSIGN_BENCH_SOFTHSM";

fn main() {
    // SoftHSM2 reads SOFTHSM2_CONF once per process: run the measurements in a child whose
    // environment points at a fresh token.
    if std::env::var_os(CHILD).is_none() {
        let token = SoftHsm::init();
        let exe = std::env::current_exe().expect("bench binary");
        let status = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("SOFTHSM2_CONF", token.conf())
            .env(CHILD, "1")
            .status()
            .expect("bench child runs");
        std::process::exit(status.code().unwrap_or(1));
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }

    let dir = tempfile::tempdir().expect("dir");
    println!("sign latency, {SIGNATURES} signatures each over a 300-byte decision payload");
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "backend", "median", "p99", "max"
    );

    let software = SoftwareKey::generate(&dir.path().join("k.pem")).expect("software key");
    report("software (p256, baseline)", &software);

    let pin = |_: &PinRequest<'_>| -> Result<Zeroizing<String>, KeyError> {
        Ok(Zeroizing::new(SoftHsm::PIN.to_string()))
    };
    let pkcs11 = Pkcs11Key::generate(
        &Pkcs11Config {
            module: countersign_testdevices::softhsm::MODULE.into(),
            token: TokenSelector::Label(SoftHsm::LABEL.into()),
            key: KeySelector::Label("bench".into()),
        },
        &pin,
    )
    .expect("pkcs11 key");
    report("PKCS#11 (SoftHSM2 2.6)", &pkcs11);

    let tpm = Swtpm::start();
    let tpm_key = TpmKey::generate(
        &TpmConfig {
            tcti: tpm.tcti(),
            key_file: dir.path().join("tpm.json"),
        },
        "bench",
        None,
    )
    .expect("tpm key");
    report("TPM 2.0 (swtpm over TCP)", &tpm_key);
}

fn report(name: &str, key: &dyn Signer) {
    let message = vec![b'x'; 300];
    for _ in 0..WARM_UP {
        key.sign(&message).expect("sign");
    }
    let mut times: Vec<Duration> = (0..SIGNATURES)
        .map(|_| {
            let started = Instant::now();
            let signature = key.sign(&message).expect("sign");
            let elapsed = started.elapsed();
            std::hint::black_box(signature);
            elapsed
        })
        .collect();
    let last = key.sign(&message).expect("sign");
    assert_eq!(key.public_key().verify(&message, &last), Ok(()));
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        name,
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
}
