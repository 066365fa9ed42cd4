//! Audit reports from the approver's mirror, written to a file: never a half-written report
//! under the final name. The report is written beside it as `<name>.partial` and renamed when
//! complete; a failed or cancelled export removes the partial file.

use std::path::Path;

use countersign_core::{KeyId, Timestamp};
use countersign_keys::Signer;
use countersign_mirror::{Mirror, SearchQuery};
use countersign_report::{Control, ReportError, bundle, csv_export, pdf};

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One row per request.
    Csv,
    /// The verifiable evidence bundle (JSON lines), signed by the exporter.
    Bundle,
    /// The PDF report.
    Pdf,
}

impl Format {
    /// The file extension reports of this format take.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Bundle => "jsonl",
            Format::Pdf => "pdf",
        }
    }
}

/// The approver who signs an evidence bundle.
pub struct Exporter<'a> {
    /// Their id.
    pub approver_id: &'a str,
    /// Their enrolled key's id.
    pub key_id: KeyId,
    /// That key, opened.
    pub signer: &'a dyn Signer,
}

/// Why an export did not complete (nothing is left under its name).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The report could not be made, or was cancelled.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The file could not be written.
    #[error("{0}")]
    File(String),
    /// A bundle needs the exporter's key.
    #[error("an evidence bundle is signed: open your key first")]
    NoExporter,
}

/// Writes the requests of `mirror` matching `query` as `format` to `out`, at `now`; a bundle is
/// signed by `exporter`.
pub async fn write(
    mirror: &Mirror,
    query: &SearchQuery,
    format: Format,
    out: &Path,
    exporter: Option<&Exporter<'_>>,
    now: Timestamp,
    control: Control<'_>,
) -> Result<(), ExportError> {
    if format == Format::Bundle && exporter.is_none() {
        return Err(ExportError::NoExporter);
    }
    let partial = out.with_extension("partial");
    let result = write_to(mirror, query, format, &partial, exporter, now, control).await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out)
        .map_err(|e| ExportError::File(format!("writing {}: {e}", out.display())))
}

async fn write_to(
    mirror: &Mirror,
    query: &SearchQuery,
    format: Format,
    partial: &Path,
    exporter: Option<&Exporter<'_>>,
    now: Timestamp,
    control: Control<'_>,
) -> Result<(), ExportError> {
    let file = || {
        std::fs::File::create(partial)
            .map_err(|e| ExportError::File(format!("creating {}: {e}", partial.display())))
    };
    match format {
        Format::Csv => {
            csv_export::write(mirror, query, file()?, control).await?;
        }
        Format::Pdf => {
            let bytes = pdf::write(mirror, query, now, control).await?;
            std::fs::write(partial, bytes)
                .map_err(|e| ExportError::File(format!("writing {}: {e}", partial.display())))?;
        }
        Format::Bundle => {
            let exporter = exporter.ok_or(ExportError::NoExporter)?;
            let sign = |m: &[u8]| exporter.signer.sign(m).map_err(|e| e.to_string());
            let signed_by = bundle::Exporter {
                approver_id: exporter.approver_id.to_owned(),
                key_id: exporter.key_id,
                sign: &sign,
            };
            bundle::write(mirror, query, file()?, &signed_by, now, control).await?;
        }
    }
    Ok(())
}
