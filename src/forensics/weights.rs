//! Where the detector's learned parameters come from: the files shipped in `weights/`,
//! compiled into the binary so that it runs from any folder, or files the operator names
//! (`--weights`/`--fusion`, `detector.weights`/`detector.fusion`). Each is identified by the
//! SHA-256 of the bytes actually loaded, which `tellscan --version` and `GET /health` report.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sha256_hex;

/// The `ml` network's weights this binary was built with (`weights/detector.safetensors`).
pub const BUILT_IN_MODEL: &[u8] = include_bytes!("../../weights/detector.safetensors");
/// The calibrated fusion this binary was built with (`weights/fusion.json`).
pub const BUILT_IN_FUSION: &[u8] = include_bytes!("../../weights/fusion.json");

/// Where one weights file comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WeightsSource {
    /// The copy compiled into the binary.
    #[default]
    BuiltIn,
    /// A file on disk.
    File(PathBuf),
}

impl WeightsSource {
    /// A setting's value: empty selects the built-in copy, anything else is a path.
    pub fn from_setting(value: &str) -> Self {
        match value.trim() {
            "" => WeightsSource::BuiltIn,
            path => WeightsSource::File(PathBuf::from(path)),
        }
    }

    /// The bytes to load: the built-in copy, or the file read with `read` (whose errors name
    /// it); with the fingerprint of exactly these bytes.
    pub fn bytes<E>(
        &self,
        built_in: &'static [u8],
        read: impl FnOnce(&Path) -> Result<Vec<u8>, E>,
    ) -> Result<(Cow<'static, [u8]>, Fingerprint), E> {
        let bytes = match self {
            WeightsSource::BuiltIn => Cow::Borrowed(built_in),
            WeightsSource::File(path) => Cow::Owned(read(path)?),
        };
        let fingerprint = Fingerprint { source: self.clone(), sha256: sha256_hex(&bytes) };
        Ok((bytes, fingerprint))
    }

    /// How errors name the source: the path, or `built-in <file>` for the compiled-in copy.
    pub fn origin(&self, shipped_as: &str) -> PathBuf {
        match self {
            WeightsSource::BuiltIn => PathBuf::from(format!("built-in {shipped_as}")),
            WeightsSource::File(path) => path.clone(),
        }
    }
}

impl fmt::Display for WeightsSource {
    /// `built-in`, or the file's path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsSource::BuiltIn => f.write_str("built-in"),
            WeightsSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Serialize for WeightsSource {
    /// As a setting: `""` for the built-in copy, else the path.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WeightsSource::BuiltIn => s.serialize_str(""),
            WeightsSource::File(path) => path.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for WeightsSource {
    /// From a setting, as [`WeightsSource::from_setting`].
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(WeightsSource::from_setting(&String::deserialize(d)?))
    }
}

/// Which bytes a detector loaded: their source and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Built in, or the file.
    pub source: WeightsSource,
    /// Lower-case hex SHA-256 of the bytes loaded.
    pub sha256: String,
}

impl fmt::Display for Fingerprint {
    /// `sha256:<hex> (<source>)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{} ({})", self.sha256, self.source)
    }
}

/// The fingerprints of what a detector runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsInUse {
    /// The `ml` network's weights; `None` when the detector runs without the module.
    pub model: Option<Fingerprint>,
    /// The calibrated fusion; `None` for the uncalibrated fusion v1.
    pub fusion: Option<Fingerprint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_setting_selects_the_built_in_copy() {
        assert_eq!(WeightsSource::from_setting(" "), WeightsSource::BuiltIn);
        assert_eq!(WeightsSource::from_setting("w/x.json"), WeightsSource::File("w/x.json".into()));
        let parsed: WeightsSource = serde_json::from_str("\"\"").unwrap();
        assert_eq!(parsed, WeightsSource::BuiltIn);
        assert_eq!(serde_json::to_string(&WeightsSource::BuiltIn).unwrap(), "\"\"");
    }

    #[test]
    fn the_built_in_bytes_are_the_shipped_files_and_are_fingerprinted() {
        let never = |_: &Path| -> Result<Vec<u8>, ()> { panic!("the built-in copy reads no file") };
        let (bytes, print) = WeightsSource::BuiltIn.bytes(BUILT_IN_MODEL, never).unwrap();
        assert_eq!(&*bytes, BUILT_IN_MODEL);
        assert_eq!(print.sha256, sha256_hex(BUILT_IN_MODEL));
        assert_eq!(print.to_string(), format!("sha256:{} (built-in)", print.sha256));
        let file = WeightsSource::File("f.bin".into());
        let (bytes, print) = file.bytes(BUILT_IN_MODEL, |_| Ok::<_, ()>(b"abc".to_vec())).unwrap();
        assert_eq!(&*bytes, b"abc");
        assert_eq!(print.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(file.origin("fusion.json"), PathBuf::from("f.bin"));
        assert_eq!(WeightsSource::BuiltIn.origin("fusion.json"), PathBuf::from("built-in fusion.json"));
    }
}
