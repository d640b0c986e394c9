//! Provenance module: C2PA manifests, read and validated offline with the `c2pa` crate.
//!
//! One [`Provenance`] is built at start-up and shared by every request. It holds a c2pa
//! [`Context`] whose settings keep the reader offline:
//!
//! - remote-manifest fetching is off (`verify.remote_manifest_fetch = false`; the crate is
//!   also compiled without its `fetch_remote_manifests` feature), so a file that only points
//!   at a remote manifest comes back as [`ManifestState::Remote`];
//! - OCSP fetching is off (`verify.ocsp_fetch = false`); only OCSP responses stapled inside
//!   the manifest are looked at;
//! - the crate is compiled without any HTTP client (`default-features = false`), and the
//!   context is given a sync and an async HTTP resolver that refuse every request, so even a
//!   code path we did not foresee cannot reach the network;
//! - trust verification (`verify.verify_trust`, `verify.verify_timestamp_trust`) is on only
//!   when trust anchors are configured. Without anchors no signer can be trusted, and a
//!   signer that is not trusted is never a reason to call a manifest invalid.
//!
//! # States
//!
//! - [`ManifestState::None`]: no C2PA data (and no remote reference) in the file.
//! - [`ManifestState::Remote`]: only a remote-manifest URL (XMP `dcterms:provenance`); not
//!   fetched, so not checked.
//! - [`ManifestState::Error`]: C2PA data is there but could not be read (malformed JUMBF,
//!   unknown signature algorithm, pre-1.0 manifest, parser guard, reader panic…).
//! - [`ManifestState::Valid`]: signature and bindings validated; the only failure codes, if
//!   any, are "untrusted signer" or informational ones (timestamp, OCSP, CAWG trust).
//! - [`ManifestState::Invalid`]: a real validation failure (signature mismatch, data or
//!   BMFF hash mismatch, missing ingredient manifest, hashed-URI mismatch…).
//!
//! `trusted` is a separate bit: the signer chains to a configured trust anchor.
//!
//! # Scoring ([`ProvenanceFinding::to_module_report`])
//!
//! | finding | score | abstained |
//! |---|---|---|
//! | no manifest | 0.5 | yes: "no C2PA manifest" |
//! | remote manifest only | 0.5 | yes, flag `c2pa_remote_manifest` |
//! | unreadable | 0.5 | yes, flag `c2pa_unreadable` |
//! | valid, declares a trained-model source (`trainedAlgorithmicMedia`, `compositeWithTrainedAlgorithmicMedia`, `trainedAlgorithmicData`) | 0.97 (0.98 trusted) | no |
//! | valid, declares another synthetic source (`algorithmicMedia`, `compositeSynthetic`) | 0.9 | no |
//! | valid, declares a capture source (`digitalCapture`, `computationalCapture`, …) | 0.25 untrusted, 0.05 trusted | no |
//! | valid, no source type (an edit history only) | 0.45 | no |
//! | invalid (broken manifest, possible tampering) | 0.6 if it declares an AI source, else 0.5 | no |
//!
//! The source types are looked for in every action of every manifest in the store
//! (active manifest and ingredients' manifests), so an AI ingredient inside a later edit still
//! counts. An invalid manifest is not decisive either way: it proves the file changed after
//! signing, not what made the pixels.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use c2pa::http::http::{Request, Response};
use c2pa::http::{AsyncHttpResolver, HttpResolverError, SyncHttpResolver};
use c2pa::{Context, Reader, Settings, ValidationState};

use super::source_type::{DigitalSourceType, SourceKind};
use serde::Serialize;

use super::report::{Flag, ModuleReport};

/// Settings of the provenance module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvenanceConfig {
    /// Path of a PEM file of trust anchors (root or intermediate CA certificates); `None`
    /// means no trust list, so no signer is ever `trusted`.
    pub trust_anchors_pem: Option<PathBuf>,
}

/// The C2PA reader, built once and shared (`Send + Sync`) by all requests.
#[derive(Debug, Clone)]
pub struct Provenance {
    context: Arc<Context>,
    trust_enabled: bool,
}

/// What the C2PA store in a file amounts to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ManifestState {
    /// No C2PA manifest, embedded or referenced.
    None,
    /// Only a remote manifest is referenced; it was not fetched, so not checked.
    Remote,
    /// C2PA data is present but could not be read; the reason.
    Error(String),
    /// The manifest validated (untrusted signer and informational codes allowed).
    Valid,
    /// The manifest failed validation (tampering or a broken signature).
    Invalid,
}

/// The provenance module's finding for one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvenanceFinding {
    /// Overall state of the C2PA store.
    pub state: ManifestState,
    /// The claim signer chains to a configured trust anchor. Independent of validity: a
    /// tampered file can still carry a trusted signature (only a valid manifest gets the
    /// `c2pa_trusted` flag).
    pub trusted: bool,
    /// The active manifest's claim generator, e.g. `Adobe_Photoshop/26.9.0 adobe_c2pa/0.14.2`.
    pub claim_generator: Option<String>,
    /// The active manifest's signer: the certificate's issuing organisation, else its common name.
    pub signer: Option<String>,
    /// Last segment of the IPTC digital-source-type URI of the first action in the active
    /// manifest that declares one (e.g. `trainedAlgorithmicMedia`).
    pub digital_source_type: Option<String>,
    /// Every digital source type (last segments, de-duplicated, active manifest first) in any
    /// action of any manifest of the store, ingredients included.
    pub all_source_types: Vec<String>,
    /// Validation failure codes reported by the reader (e.g. `assertion.dataHash.mismatch`,
    /// `signingCredential.untrusted`), de-duplicated, active manifest first.
    pub failure_codes: Vec<String>,
    /// Number of manifests in the store.
    pub manifest_count: usize,
    /// The remote-manifest URL, when the file references one that was not fetched.
    pub remote_url: Option<String>,
}

/// `true` for a failure code that does not make a manifest invalid: an untrusted signer,
/// and the informational timestamp, OCSP and CAWG-trust codes.
fn is_benign_code(code: &str) -> bool {
    code == "signingCredential.untrusted"
        || code.starts_with("timeStamp.")
        || code.starts_with("signingCredential.ocsp.")
        || (code.starts_with("cawg.") && code.ends_with(".untrusted"))
}

/// An HTTP resolver that refuses every request: the provenance module never goes online.
struct OfflineResolver;

impl OfflineResolver {
    fn refuse(request: &Request<Vec<u8>>) -> HttpResolverError {
        tracing::warn!(uri = %request.uri(), "c2pa attempted a network request; refused (offline)");
        HttpResolverError::UriDisallowed { uri: request.uri().to_string() }
    }
}

impl SyncHttpResolver for OfflineResolver {
    fn http_resolve(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Box<dyn std::io::Read>>, HttpResolverError> {
        Err(Self::refuse(&request))
    }
}

// Written out by hand instead of with `#[async_trait]` (not a dependency of this crate):
// this is the signature the macro generates for the trait's method.
impl AsyncHttpResolver for OfflineResolver {
    fn http_resolve_async<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Vec<u8>>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Response<Box<dyn std::io::Read>>, HttpResolverError>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let refused = Self::refuse(&request);
        Box::pin(async move { Err(refused) })
    }
}

impl Provenance {
    /// Builds the shared C2PA context: remote manifests and OCSP off, network refused, and
    /// trust verification against the PEM file's anchors when one is configured.
    ///
    /// Fails with a clear message when the PEM file is missing, unreadable or holds no
    /// certificate.
    pub fn new(config: &ProvenanceConfig) -> anyhow::Result<Self> {
        let anchors = match &config.trust_anchors_pem {
            None => None,
            Some(path) => {
                let pem = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the C2PA trust anchors PEM file {}", path.display())
                })?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    anyhow::bail!(
                        "the C2PA trust anchors file {} holds no PEM certificate \
                         (expected -----BEGIN CERTIFICATE----- blocks)",
                        path.display()
                    );
                }
                Some((path, pem))
            }
        };
        let trust_enabled = anchors.is_some();

        // the reader never builds manifests, so thumbnail generation (not compiled in) is off
        let mut settings = Settings::new()
            .with_value("builder.thumbnail.enabled", false)
            .and_then(|s| s.with_value("verify.remote_manifest_fetch", false))
            .and_then(|s| s.with_value("verify.ocsp_fetch", false))
            .and_then(|s| s.with_value("verify.verify_after_reading", true))
            .and_then(|s| s.with_value("verify.verify_trust", trust_enabled))
            .and_then(|s| s.with_value("verify.verify_timestamp_trust", trust_enabled))
            // An empty allow-list: even the crate's own resolver would refuse every host.
            .and_then(|s| s.with_value("core.allowed_network_hosts", serde_json::json!([])))
            .context("cannot configure the C2PA reader")?;
        if let Some((path, pem)) = anchors {
            settings = settings.with_value("trust.trust_anchors", pem).with_context(|| {
                format!("the C2PA trust anchors file {} is not a valid PEM bundle", path.display())
            })?;
        }

        let context = Context::new()
            .with_settings(settings)
            .context("cannot build the C2PA context")?
            .with_resolver(OfflineResolver)
            .with_resolver_async(OfflineResolver)
            .into_shared();
        Ok(Self { context, trust_enabled })
    }

    /// `true` when trust anchors were configured.
    pub fn trust_enabled(&self) -> bool {
        self.trust_enabled
    }

    /// Reads and validates the C2PA store of one file, offline.
    ///
    /// `mime` is the sniffed type (`image/jpeg`, `image/png`, `image/webp`, `image/heif`,
    /// `image/avif`, …); the reader also sniffs the bytes itself. Never panics: a panic inside
    /// the reader becomes [`ManifestState::Error`].
    pub fn inspect(&self, mime: &str, bytes: &[u8]) -> ProvenanceFinding {
        match catch_unwind(AssertUnwindSafe(|| self.inspect_inner(mime, bytes))) {
            Ok(finding) => finding,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                tracing::warn!(%what, "the C2PA reader panicked");
                ProvenanceFinding::with_state(ManifestState::Error(format!(
                    "the C2PA reader crashed on this file ({what})"
                )))
            }
        }
    }

    fn inspect_inner(&self, mime: &str, bytes: &[u8]) -> ProvenanceFinding {
        if let Some(reason) = tiff_guard(bytes) {
            return ProvenanceFinding::with_state(ManifestState::Error(reason));
        }
        let result = Reader::from_shared_context(&self.context).with_stream(mime, Cursor::new(bytes));
        let reader = match result {
            Ok(reader) => reader,
            Err(c2pa::Error::JumbfNotFound) | Err(c2pa::Error::ProvenanceMissing) => {
                return ProvenanceFinding::with_state(ManifestState::None);
            }
            Err(c2pa::Error::RemoteManifestUrl(url)) | Err(c2pa::Error::RemoteManifestFetch(url)) => {
                let mut finding = ProvenanceFinding::with_state(ManifestState::Remote);
                finding.remote_url = Some(url);
                return finding;
            }
            Err(err) => {
                return ProvenanceFinding::with_state(ManifestState::Error(describe_error(&err)));
            }
        };
        self.analyse(&reader)
    }

    fn analyse(&self, reader: &Reader) -> ProvenanceFinding {
        let mut finding = ProvenanceFinding::with_state(ManifestState::Invalid);
        finding.manifest_count = reader.manifests().len();

        // Failure codes: active manifest first, then ingredient deltas, then anything else
        // the flat status list carries.
        let mut codes: Vec<String> = Vec::new();
        if let Some(results) = reader.validation_results() {
            if let Some(active) = results.active_manifest() {
                codes.extend(active.failure().iter().map(|s| s.code().to_string()));
            }
            for delta in results.ingredient_deltas().into_iter().flatten() {
                codes.extend(delta.validation_deltas().failure().iter().map(|s| s.code().to_string()));
            }
        }
        if let Some(statuses) = reader.validation_status() {
            codes.extend(statuses.iter().filter(|s| !s.passed()).map(|s| s.code().to_string()));
        }
        finding.failure_codes = dedup(codes);

        let active = reader.active_manifest();
        if let Some(manifest) = active {
            finding.claim_generator = claim_generator_of(manifest);
            finding.signer = manifest
                .signature_info()
                .and_then(|info| info.issuer.clone().or_else(|| info.common_name.clone()));
            finding.digital_source_type = source_types_of(manifest).into_iter().next();
        }

        let mut sources = Vec::new();
        if let Some(manifest) = active {
            sources.extend(source_types_of(manifest));
        }
        let mut others: Vec<(&String, &c2pa::Manifest)> = reader
            .manifests()
            .iter()
            .filter(|(label, _)| Some(label.as_str()) != reader.active_label())
            .collect();
        others.sort_by(|a, b| a.0.cmp(b.0));
        for (_, manifest) in others {
            sources.extend(source_types_of(manifest));
        }
        finding.all_source_types = dedup(sources);

        let library_state = reader.validation_state();
        let only_benign = finding.failure_codes.iter().all(|c| is_benign_code(c));
        finding.state = match library_state {
            ValidationState::Valid | ValidationState::Trusted => ManifestState::Valid,
            // The library calls some informational codes failures (e.g. a malformed timestamp
            // in older releases); those do not make the manifest invalid.
            ValidationState::Invalid
                if only_benign && active.is_some() && has_signature_validated(reader) =>
            {
                ManifestState::Valid
            }
            ValidationState::Invalid => ManifestState::Invalid,
        };
        finding.trusted = self.trust_enabled
            && (library_state == ValidationState::Trusted || has_trusted_claim_signer(reader));
        finding
    }
}

/// Most pages (IFDs in the main chain) a TIFF may have before the reader refuses it.
const TIFF_MAX_PAGES: usize = 2000;
/// Most SubIFDs one TIFF page may list before the reader refuses it.
const TIFF_MAX_SUBFILES: u64 = 1000;

/// The TIFF parser DoS guard of c2pa-rs 0.91, which c2pa 0.90.22 lacks: a TIFF (or DNG)
/// whose page chain is too long or cyclic, or whose page lists too many SubIFDs, is refused
/// before the reader sees it (c2pa 0.90.22 spends over a minute of CPU on `tiff_poc.tiff`,
/// 5,000 SubIFDs, before answering "no manifest"). The reader sniffs the bytes whatever
/// the MIME type says, so the guard looks at the magic bytes, not at `mime`.
///
/// Returns the refusal reason, or `None` when the file is not TIFF or passes the limits;
/// structural errors it does not police are left to the reader.
fn tiff_guard(bytes: &[u8]) -> Option<String> {
    let little = match bytes.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(u64::from(if little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }))
    };
    let u32_at = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u64::from(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }))
    };
    let u64_at = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if little { u64::from_le_bytes(b) } else { u64::from_be_bytes(b) })
    };
    let big = match u16_at(2)? {
        42 => false,
        43 => true,
        _ => return None,
    };
    let (count_len, entry_len, mut offset) = if big { (8, 20, u64_at(8)?) } else { (2, 12, u32_at(4)?) };
    let mut visited = std::collections::HashSet::new();
    let mut pages = 0usize;
    while offset != 0 {
        if !visited.insert(offset) {
            return Some("asset could not be parsed: Cyclic IFD chain detected".to_string());
        }
        pages += 1;
        if pages > TIFF_MAX_PAGES {
            return Some("asset could not be parsed: TIFF file has too many pages".to_string());
        }
        let entries = if big { u64_at(offset)? } else { u16_at(offset)? };
        let first_entry = offset.checked_add(count_len)?;
        let table_len = entries.checked_mul(entry_len)?;
        if first_entry.checked_add(table_len)? > bytes.len() as u64 {
            return None; // truncated: the reader reports it
        }
        for i in 0..entries {
            let at = first_entry + i * entry_len;
            if u16_at(at)? == 0x014a {
                let count = if big { u64_at(at + 4)? } else { u32_at(at + 4)? };
                if count > TIFF_MAX_SUBFILES {
                    return Some("asset could not be parsed: TIFF file has too many subfiles".to_string());
                }
            }
        }
        let next_at = first_entry + table_len;
        offset = if big { u64_at(next_at)? } else { u32_at(next_at)? };
    }
    None
}

/// `true` when the active manifest's claim signer chains to a configured anchor, whatever
/// else the validation found. A `signingCredential.trusted` logged for an assertion (a CAWG
/// identity credential) does not count.
fn has_trusted_claim_signer(reader: &Reader) -> bool {
    reader.validation_results().and_then(|r| r.active_manifest()).is_some_and(|a| {
        a.success().iter().any(|s| {
            s.code() == "signingCredential.trusted"
                && !s.url().is_some_and(|u| u.contains("/c2pa.assertions/"))
        })
    })
}

/// `true` when the active manifest's claim signature validated.
fn has_signature_validated(reader: &Reader) -> bool {
    reader
        .validation_results()
        .and_then(|r| r.active_manifest())
        .is_some_and(|a| a.success().iter().any(|s| s.code() == "claimSignature.validated"))
}

/// A short human reason for a reader error.
fn describe_error(err: &c2pa::Error) -> String {
    match err {
        c2pa::Error::PrereleaseError => {
            "the manifest is a pre-1.0 (prerelease) C2PA manifest, which current readers reject".to_string()
        }
        c2pa::Error::UnknownAlgorithm => {
            "the manifest's signature algorithm is missing or unknown".to_string()
        }
        c2pa::Error::UnsupportedType => "the C2PA reader does not support this file type".to_string(),
        other => other.to_string(),
    }
}

/// The manifest's claim generator: the v1 `claim_generator` string, else the v2
/// `claim_generator_info` entries as `name/version`, space-separated.
fn claim_generator_of(manifest: &c2pa::Manifest) -> Option<String> {
    if let Some(cg) = manifest.claim_generator().filter(|s| !s.is_empty()) {
        return Some(cg.to_string());
    }
    let infos = manifest.claim_generator_info.as_ref()?;
    let parts: Vec<String> = infos
        .iter()
        .filter(|i| !i.name.is_empty())
        .map(|i| match &i.version {
            Some(v) if !v.is_empty() => format!("{}/{}", i.name, v),
            _ => i.name.clone(),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Digital source types (last URI segments) of the manifest's actions, in order.
fn source_types_of(manifest: &c2pa::Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for assertion in manifest.assertions() {
        if !assertion.label().starts_with("c2pa.actions") {
            continue;
        }
        let Ok(value) = assertion.value() else { continue };
        let Some(actions) = value.get("actions").and_then(|a| a.as_array()) else { continue };
        for action in actions {
            let declared = action
                .get("digitalSourceType")
                .or_else(|| action.get("parameters").and_then(|p| p.get("digitalSourceType")));
            if let Some(uri) = declared.and_then(|v| v.as_str()) {
                if let Some(segment) = last_segment(uri) {
                    out.push(segment);
                }
            }
        }
    }
    out
}

/// The last path segment of an IPTC/C2PA source-type URI.
fn last_segment(uri: &str) -> Option<String> {
    let trimmed = uri.trim().trim_end_matches('/');
    let segment = trimmed.rsplit(['/', '#']).next().unwrap_or(trimmed);
    (!segment.is_empty()).then(|| segment.to_string())
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

impl ProvenanceFinding {
    fn with_state(state: ManifestState) -> Self {
        Self {
            state,
            trusted: false,
            claim_generator: None,
            signer: None,
            digital_source_type: None,
            all_source_types: Vec::new(),
            failure_codes: Vec::new(),
            manifest_count: 0,
            remote_url: None,
        }
    }

    /// The first declared source type of one of these kinds, if any.
    fn source_of_kind(&self, kinds: &[SourceKind]) -> Option<&str> {
        self.all_source_types
            .iter()
            .map(String::as_str)
            .find(|s| DigitalSourceType::parse(s).is_some_and(|t| kinds.contains(&t.kind)))
    }

    /// A source type that declares content from a trained generative model, if any.
    fn trained_ai_source(&self) -> Option<&str> {
        self.source_of_kind(&[SourceKind::TrainedAlgorithmic, SourceKind::CompositeWithTrainedAlgorithmic])
    }

    /// A source type that declares synthetic content (trained or not), if any.
    fn ai_source(&self) -> Option<&str> {
        self.trained_ai_source().or_else(|| self.source_of_kind(&[SourceKind::Synthetic]))
    }

    /// A source type that declares a camera (or film/print scan) capture, if any.
    fn capture_source(&self) -> Option<&str> {
        self.source_of_kind(&[SourceKind::Capture])
    }

    /// "by <signer> (claim generator <cg>)" for explanations.
    fn who(&self) -> String {
        let signer = self.signer.as_deref().unwrap_or("an unknown signer");
        match &self.claim_generator {
            Some(cg) => format!("signed by {signer}, claim generator \"{cg}\""),
            None => format!("signed by {signer}"),
        }
    }

    /// The module's report; see the module documentation for the scoring table.
    pub fn to_module_report(&self) -> ModuleReport {
        match &self.state {
            ManifestState::None => ModuleReport::abstain("no C2PA manifest"),
            ManifestState::Remote => {
                let mut report = ModuleReport::abstain(
                    "only a remote manifest is referenced; remote fetching is off, so it was not checked",
                );
                report.flags.push(Flag::C2paRemoteManifest);
                if let Some(url) = &self.remote_url {
                    report.explanations.push(format!("The file points to a remote C2PA manifest at {url}."));
                }
                report
            }
            ManifestState::Error(reason) => {
                let mut report =
                    ModuleReport::abstain(format!("the C2PA manifest could not be read: {reason}"));
                report.flags.push(Flag::C2paUnreadable);
                report
            }
            ManifestState::Valid => self.valid_report(),
            ManifestState::Invalid => self.invalid_report(),
        }
    }

    fn source_flags(&self, flags: &mut Vec<Flag>) {
        if self.ai_source().is_some() {
            flags.push(Flag::C2paAiSource);
        }
        if self.capture_source().is_some() {
            flags.push(Flag::C2paCaptureSource);
        }
    }

    fn valid_report(&self) -> ModuleReport {
        let mut flags = vec![Flag::C2paPresent, Flag::C2paValid];
        if self.trusted {
            flags.push(Flag::C2paTrusted);
        }
        self.source_flags(&mut flags);

        let who = self.who();
        let trust = if self.trusted {
            "the signer chains to a configured trust anchor".to_string()
        } else {
            "the signer is not on a configured trust list".to_string()
        };
        let mut explanations = Vec::new();
        let score = if let Some(source) = self.trained_ai_source() {
            explanations.push(format!(
                "A valid C2PA manifest ({who}) declares the content as {source}: made with a trained generative model."
            ));
            if self.trusted {
                0.98
            } else {
                0.97
            }
        } else if let Some(source) = self.ai_source() {
            explanations.push(format!(
                "A valid C2PA manifest ({who}) declares the content as {source}: algorithmically generated."
            ));
            0.9
        } else if let Some(source) = self.capture_source() {
            explanations.push(format!("A valid C2PA manifest ({who}) declares a camera capture ({source})."));
            if self.trusted {
                0.05
            } else {
                0.25
            }
        } else {
            explanations.push(format!(
                "A valid C2PA manifest ({who}) records an edit history but declares no digital source type."
            ));
            0.45
        };
        explanations.push(format!("Signature and content bindings validated; {trust}."));
        if !self.failure_codes.is_empty() {
            explanations.push(format!("Non-fatal validation codes: {}.", self.failure_codes.join(", ")));
        }
        ModuleReport { score, abstained: false, flags, explanations, elapsed_ms: 0.0 }
    }

    fn invalid_report(&self) -> ModuleReport {
        let mut flags = vec![Flag::C2paPresent, Flag::C2paInvalid];
        self.source_flags(&mut flags);
        let who = self.who();
        let serious: Vec<&str> =
            self.failure_codes.iter().map(String::as_str).filter(|c| !is_benign_code(c)).collect();
        let codes = if serious.is_empty() { self.failure_codes.join(", ") } else { serious.join(", ") };
        let mut explanations = vec![format!(
            "The C2PA manifest ({who}) is broken: validation failed ({codes}); the file was probably altered after signing."
        )];
        let score = if let Some(source) = self.ai_source() {
            explanations.push(format!(
                "The broken manifest still declares the content as {source}; a claim, not proof."
            ));
            0.6
        } else {
            0.5
        };
        ModuleReport { score, abstained: false, flags, explanations, elapsed_ms: 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn provenance_is_send_and_sync() {
        assert_send_sync::<Provenance>();
        assert_send_sync::<ProvenanceFinding>();
    }

    #[test]
    fn last_segment_of_iptc_uris() {
        assert_eq!(
            last_segment("http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia").as_deref(),
            Some("trainedAlgorithmicMedia")
        );
        assert_eq!(last_segment("http://c2pa.org/digitalsourcetype/empty/").as_deref(), Some("empty"));
        assert_eq!(last_segment("digitalCapture").as_deref(), Some("digitalCapture"));
        assert_eq!(last_segment(""), None);
    }

    #[test]
    fn tiff_guard_limits() {
        // Little-endian TIFF, one page whose SubIFDs tag lists `n` offsets.
        fn tiff(n: u32) -> Vec<u8> {
            let mut b = b"II*\0".to_vec();
            b.extend_from_slice(&8u32.to_le_bytes());
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&0x014au16.to_le_bytes());
            b.extend_from_slice(&4u16.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(&26u32.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b
        }
        assert_eq!(tiff_guard(&tiff(3)), None);
        assert!(tiff_guard(&tiff(5000)).unwrap().contains("too many subfiles"));
        // A page chain that points back at itself.
        let mut cyclic = tiff(3);
        let len = cyclic.len();
        cyclic[len - 4..].copy_from_slice(&8u32.to_le_bytes());
        assert!(tiff_guard(&cyclic).unwrap().contains("Cyclic"));
        assert_eq!(tiff_guard(b"\xff\xd8\xff"), None);
        assert_eq!(tiff_guard(b"II*"), None);
    }

    #[test]
    fn benign_codes() {
        assert!(is_benign_code("signingCredential.untrusted"));
        assert!(is_benign_code("timeStamp.malformed"));
        assert!(is_benign_code("cawg.x509.credential.untrusted"));
        assert!(!is_benign_code("claimSignature.mismatch"));
        assert!(!is_benign_code("assertion.dataHash.mismatch"));
    }

    #[test]
    fn missing_pem_is_a_clear_error() {
        let config = ProvenanceConfig { trust_anchors_pem: Some("/nonexistent/anchors.pem".into()) };
        let err = Provenance::new(&config).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/anchors.pem"), "{err:#}");
    }

    #[test]
    fn garbage_bytes_never_panic() {
        let p = Provenance::new(&ProvenanceConfig::default()).unwrap();
        for mime in ["image/jpeg", "image/png", "image/webp", "image/heif", "image/avif", "text/plain"] {
            let f = p.inspect(mime, &[0xff, 0xd8, 0xff, 0xe1, 0x00]);
            assert!(
                matches!(f.state, ManifestState::None | ManifestState::Error(_)),
                "{mime}: {:?}",
                f.state
            );
            let f = p.inspect(mime, &[]);
            assert!(
                matches!(f.state, ManifestState::None | ManifestState::Error(_)),
                "{mime}: {:?}",
                f.state
            );
        }
    }

    #[test]
    fn scoring_table() {
        let mut f = ProvenanceFinding::with_state(ManifestState::Valid);
        f.all_source_types = vec!["trainedAlgorithmicMedia".into()];
        let r = f.to_module_report();
        assert!((r.score - 0.97).abs() < 1e-9 && !r.abstained);
        assert!(r.flags.contains(&Flag::C2paAiSource) && r.flags.contains(&Flag::C2paValid));

        f.all_source_types = vec!["digitalCapture".into()];
        assert!((f.to_module_report().score - 0.25).abs() < 1e-9);
        f.trusted = true;
        let r = f.to_module_report();
        assert!((r.score - 0.05).abs() < 1e-9 && r.flags.contains(&Flag::C2paTrusted));

        f.trusted = false;
        f.all_source_types.clear();
        assert!((f.to_module_report().score - 0.45).abs() < 1e-9);

        f.state = ManifestState::Invalid;
        f.failure_codes = vec!["assertion.dataHash.mismatch".into()];
        let r = f.to_module_report();
        assert!((r.score - 0.5).abs() < 1e-9 && !r.abstained && r.flags.contains(&Flag::C2paInvalid));
        assert!(r.explanations[0].contains("assertion.dataHash.mismatch"));
        f.all_source_types = vec!["trainedAlgorithmicMedia".into()];
        assert!((f.to_module_report().score - 0.6).abs() < 1e-9);

        let r = ProvenanceFinding::with_state(ManifestState::None).to_module_report();
        assert!(r.abstained && r.explanations == vec!["no C2PA manifest".to_string()]);
        let r = ProvenanceFinding::with_state(ManifestState::Remote).to_module_report();
        assert!(r.abstained && r.flags == vec![Flag::C2paRemoteManifest]);
        let r = ProvenanceFinding::with_state(ManifestState::Error("x".into())).to_module_report();
        assert!(r.abstained && r.flags == vec![Flag::C2paUnreadable]);
    }
}
