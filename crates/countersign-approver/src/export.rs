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
    // A PDF exported by someone who can sign comes with its evidence bundle, which it names.
    let evidence = match (format, exporter) {
        (Format::Pdf, Some(exporter)) => {
            Some(write_evidence(mirror, query, out, exporter, now, control).await?)
        }
        _ => None,
    };
    let partial = out.with_extension("partial");
    let result = write_to(
        mirror,
        query,
        format,
        &partial,
        exporter,
        evidence.as_ref(),
        now,
        control,
    )
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out)
        .map_err(|e| ExportError::File(format!("writing {}: {e}", out.display())))
}

/// Where a PDF's evidence bundle goes: beside it, `<name>.evidence.jsonl`.
pub fn evidence_path(pdf: &Path) -> std::path::PathBuf {
    pdf.with_extension("evidence.jsonl")
}

/// Writes the evidence bundle for a PDF at `pdf` and describes it for the PDF.
async fn write_evidence(
    mirror: &Mirror,
    query: &SearchQuery,
    pdf: &Path,
    exporter: &Exporter<'_>,
    now: Timestamp,
    control: Control<'_>,
) -> Result<pdf::Evidence, ExportError> {
    use sha2::Digest as _;
    let path = evidence_path(pdf);
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .map_err(|e| ExportError::File(format!("creating {}: {e}", partial.display())))?;
    let sign = |m: &[u8]| exporter.signer.sign(m).map_err(|e| e.to_string());
    let signed_by = bundle::Exporter {
        approver_id: exporter.approver_id.to_owned(),
        key_id: exporter.key_id,
        sign: &sign,
    };
    let written = match bundle::write(mirror, query, file, &signed_by, now, control).await {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let bytes = std::fs::read(&partial)
        .map_err(|e| ExportError::File(format!("reading {}: {e}", partial.display())))?;
    std::fs::rename(&partial, &path)
        .map_err(|e| ExportError::File(format!("writing {}: {e}", path.display())))?;
    Ok(pdf::Evidence {
        file: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        requests: written.requests,
        events: written.events,
        tree_size: written.tree_size,
    })
}

#[allow(clippy::too_many_arguments)]
async fn write_to(
    mirror: &Mirror,
    query: &SearchQuery,
    format: Format,
    partial: &Path,
    exporter: Option<&Exporter<'_>>,
    evidence: Option<&pdf::Evidence>,
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
            let bytes = pdf::write(mirror, query, now, evidence, control).await?;
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
