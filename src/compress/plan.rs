//! Per-layer compression settings: one default [`CompressConfig`] and overrides by layer name,
//! from the command line (`--density 0.1,fc3.weight=0.3`) or a JSON plan file.

use super::{compress_layer, CompressConfig, DenseLayer};
use crate::error::{Error, Result};
use crate::format::{Activation, Model};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One setting that can differ from layer to layer.
///
/// [`CompressPlan::set_from_list`] sets one from a command-line list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Fraction of weights kept by pruning ([`CompressConfig::density`]).
    Density,
    /// Codebook index bits ([`CompressConfig::bits`]).
    Bits,
    /// Processing elements ([`CompressConfig::pes`]).
    Pes,
}

impl Setting {
    /// The name used on the command line and in plan files.
    ///
    /// See [`CompressPlan::set_from_list`].
    pub fn name(self) -> &'static str {
        match self {
            Setting::Density => "density",
            Setting::Bits => "bits",
            Setting::Pes => "pes",
        }
    }
}

/// The settings of one layer that differ from the plan's default; `None` takes the default.
///
/// Given per layer by [`CompressPlan::with_layer`] or a plan file ([`CompressPlan`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSettings {
    /// Fraction of weights kept, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<f64>,
    /// Codebook index bits, 2..=8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u8>,
    /// Processing elements, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pes: Option<usize>,
}

/// The JSON form of a plan file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    default: LayerSettings,
    layers: BTreeMap<String, LayerSettings>,
}

/// Compression settings for a whole model: a default for every layer and per-layer overrides,
/// keyed by layer name (the weight tensor's name, as `eie info` prints it).
///
/// Plan file (JSON), every field optional except `layers`; a layer or field left out takes
/// the default, which itself defaults to [`CompressConfig::default`]:
///
/// ```json
/// {
///   "default": { "density": 0.1, "bits": 4, "pes": 64 },
///   "layers": {
///     "fc1.weight": { "density": 0.08, "bits": 4, "pes": 1 },
///     "fc3.weight": { "density": 0.26, "bits": 5 }
///   }
/// }
/// ```
///
/// The same plan is what [`compress_model`] compresses with and what the accuracy-aware search
/// ([`super::search::SearchOptions::plan`]) keeps fixed: a setting the plan gives (for a layer,
/// or as its default) is kept, one it leaves to the built-in default is the search's to choose.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompressPlan {
    /// Settings of every layer not named in `layers` (and of the fields a layer leaves out).
    default: CompressConfig,
    /// Per-layer overrides by layer name.
    layers: BTreeMap<String, LayerSettings>,
    /// The fields of `default` that were given rather than built in: a bare value in a
    /// command-line list, a plan file's `default`, or every field of [`CompressPlan::uniform`].
    given: LayerSettings,
}

impl CompressPlan {
    /// The same settings for every layer.
    ///
    /// The [module example](super) compresses with one.
    pub fn uniform(default: CompressConfig) -> Self {
        CompressPlan {
            given: LayerSettings {
                density: Some(default.density),
                bits: Some(default.bits),
                pes: Some(default.pes),
            },
            default,
            layers: BTreeMap::new(),
        }
    }

    /// This plan with the settings `settings` for the layer called `name` (replacing any it
    /// had).
    ///
    /// See [`LayerSettings`].
    pub fn with_layer(mut self, name: impl Into<String>, settings: LayerSettings) -> Self {
        self.layers.insert(name.into(), settings);
        self
    }

    /// The settings of layers the plan does not name (built-in defaults where none was given).
    ///
    /// See [`CompressPlan::config_for`] for a named layer's.
    pub fn default_config(&self) -> &CompressConfig {
        &self.default
    }

    /// The per-layer settings, by layer name.
    ///
    /// See [`CompressPlan::with_layer`].
    pub fn layers(&self) -> &BTreeMap<String, LayerSettings> {
        &self.layers
    }

    /// Parses a plan file's JSON text (see the type's documentation for the shape).
    ///
    /// [`CompressPlan::load`] reads the same from a file.
    pub fn from_json(text: &str) -> Result<Self> {
        let f: PlanFile = serde_json::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("compression plan: {e}")))?;
        let plan = CompressPlan {
            default: apply(&CompressConfig::default(), &f.default),
            layers: f.layers,
            given: f.default,
        };
        plan.default.validate()?;
        Ok(plan)
    }

    /// Reads a plan file.
    ///
    /// See [`CompressPlan::from_json`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            Error::InvalidArgument(reason) => Error::Parse {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// Sets one setting from a command-line value: either one value for every layer (`0.1`)
    /// or a comma-separated list of `name=value` pairs (`fc1.weight=0.08,fc2.weight=0.09`),
    /// optionally with one bare value among them, which becomes the default for the layers the
    /// list does not name. A layer named twice, or two bare values, is an error. Names are
    /// checked against the model by [`CompressPlan::check_names`].
    pub fn set_from_list(&mut self, setting: Setting, spec: &str) -> Result<()> {
        let what = setting.name();
        let mut bare_seen = false;
        let mut named = std::collections::BTreeSet::new();
        for item in spec.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "--{what} `{spec}`: empty item in the list"
                )));
            }
            match item.split_once('=') {
                None => {
                    if bare_seen {
                        return Err(Error::InvalidArgument(format!(
                            "--{what} `{spec}`: more than one value without a layer name"
                        )));
                    }
                    bare_seen = true;
                    set(&mut self.default, setting, item)?;
                    match setting {
                        Setting::Density => self.given.density = Some(self.default.density),
                        Setting::Bits => self.given.bits = Some(self.default.bits),
                        Setting::Pes => self.given.pes = Some(self.default.pes),
                    }
                }
                Some((name, value)) => {
                    let name = name.trim();
                    if name.is_empty() {
                        return Err(Error::InvalidArgument(format!(
                            "--{what} `{spec}`: `{item}` has no layer name"
                        )));
                    }
                    if !named.insert(name.to_string()) {
                        return Err(Error::InvalidArgument(format!(
                            "--{what} `{spec}`: layer `{name}` is named twice"
                        )));
                    }
                    let entry = self.layers.entry(name.to_string()).or_default();
                    let value = value.trim();
                    match setting {
                        Setting::Density => entry.density = Some(parse(what, value)?),
                        Setting::Bits => entry.bits = Some(parse(what, value)?),
                        Setting::Pes => entry.pes = Some(parse(what, value)?),
                    }
                }
            }
        }
        Ok(())
    }

    /// The settings given for the layer called `name` (its own, else the given default's);
    /// `None` where it takes a built-in default.
    ///
    /// [`super::SearchOptions::plan`] keeps these fixed.
    pub fn given_for(&self, name: &str) -> LayerSettings {
        let own = self.layers.get(name).cloned().unwrap_or_default();
        LayerSettings {
            density: own.density.or(self.given.density),
            bits: own.bits.or(self.given.bits),
            pes: own.pes.or(self.given.pes),
        }
    }

    /// The settings of the layer called `name`.
    ///
    /// What [`compress_model`] compresses that layer with.
    pub fn config_for(&self, name: &str) -> CompressConfig {
        match self.layers.get(name) {
            Some(s) => apply(&self.default, s),
            None => self.default.clone(),
        }
    }

    /// Checks that every layer the plan names is one of `names` (the model's layers) and that
    /// every layer's settings are in range. An unknown name is one error that lists the valid
    /// names.
    ///
    /// [`compress_model`] calls it before compressing.
    pub fn check_names<S: AsRef<str>>(&self, names: &[S]) -> Result<()> {
        let known: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let unknown: Vec<&str> = self
            .layers
            .keys()
            .map(String::as_str)
            .filter(|n| !known.contains(n))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "unknown layer name{} {} in the per-layer settings; the layers are: {}",
                if unknown.len() == 1 { "" } else { "s" },
                unknown
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.join(", ")
            )));
        }
        self.default.validate()?;
        for name in &known {
            self.config_for(name).validate().map_err(|e| match e {
                Error::InvalidArgument(m) => Error::InvalidArgument(format!("layer `{name}`: {m}")),
                other => other,
            })?;
        }
        Ok(())
    }
}

/// `base` with the fields `s` sets replaced.
fn apply(base: &CompressConfig, s: &LayerSettings) -> CompressConfig {
    CompressConfig {
        density: s.density.unwrap_or(base.density),
        bits: s.bits.unwrap_or(base.bits),
        pes: s.pes.unwrap_or(base.pes),
        ..base.clone()
    }
}

fn set(config: &mut CompressConfig, setting: Setting, value: &str) -> Result<()> {
    let what = setting.name();
    match setting {
        Setting::Density => config.density = parse(what, value)?,
        Setting::Bits => config.bits = parse(what, value)?,
        Setting::Pes => config.pes = parse(what, value)?,
    }
    Ok(())
}

fn parse<T: std::str::FromStr>(what: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| {
        Error::InvalidArgument(format!("--{what}: `{value}` is not a valid {what} value"))
    })
}

/// Compresses every layer of a dense model with its own settings from `plan` and chains the
/// results into a [`Model`]. `activations` gives each layer's activation (empty: identity
/// everywhere; otherwise one per layer).
pub fn compress_model(
    dense: &[DenseLayer],
    plan: &CompressPlan,
    activations: &[Activation],
) -> Result<Model> {
    if !activations.is_empty() && activations.len() != dense.len() {
        return Err(Error::InvalidArgument(format!(
            "{} activations for {} layers",
            activations.len(),
            dense.len()
        )));
    }
    let names: Vec<&str> = dense.iter().map(|d| d.name.as_str()).collect();
    plan.check_names(&names)?;
    let layers = dense
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let act = activations.get(i).copied().unwrap_or_default();
            compress_layer(d, &plan.config_for(&d.name), act)
        })
        .collect::<Result<Vec<_>>>()?;
    Model::new(layers)
        .and_then(|mut m| crate::calibration::choose_formats(&mut m, None).map(|()| m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_mix_a_default_and_named_values() {
        let mut p = CompressPlan::default();
        p.set_from_list(Setting::Density, "0.2, b=0.5").unwrap();
        p.set_from_list(Setting::Bits, "a=3").unwrap();
        assert_eq!(p.config_for("a").density, 0.2);
        assert_eq!(p.config_for("a").bits, 3);
        assert_eq!(p.config_for("b").density, 0.5);
        assert_eq!(p.config_for("b").bits, 4);
        // What was given, as opposed to built in.
        assert_eq!(p.given_for("a").density, Some(0.2));
        assert_eq!(p.given_for("a").bits, Some(3));
        assert_eq!(p.given_for("b").bits, None);
        assert_eq!(p.given_for("b").pes, None);
        assert!(p.check_names(&["a", "b"]).is_ok());
        let e = p.check_names(&["a", "c"]).unwrap_err().to_string();
        assert!(e.contains("`b`") && e.contains("a, c"), "{e}");
    }

    #[test]
    fn bad_lists_are_rejected() {
        let mut p = CompressPlan::default();
        for spec in ["0.1,0.2", "a=0.1,a=0.2", "=0.1", "a=x", "", "a=0.1,"] {
            assert!(
                p.set_from_list(Setting::Density, spec).is_err(),
                "{spec} accepted"
            );
        }
        let mut p = CompressPlan::default();
        p.set_from_list(Setting::Bits, "a=9").unwrap();
        let e = p.check_names(&["a"]).unwrap_err().to_string();
        assert!(e.contains("layer `a`") && e.contains("bits 9"), "{e}");
    }

    #[test]
    fn plan_files_parse_with_defaults() {
        let p = CompressPlan::from_json(
            r#"{"default": {"pes": 8}, "layers": {"a": {"density": 0.3}}}"#,
        )
        .unwrap();
        assert_eq!(p.config_for("a").density, 0.3);
        assert_eq!(p.config_for("a").pes, 8);
        assert_eq!(p.config_for("z").density, 1.0);
        assert_eq!(p.given_for("z").pes, Some(8));
        assert_eq!(p.given_for("z").density, None);
        assert_eq!(p.given_for("a").density, Some(0.3));
        assert!(CompressPlan::from_json(r#"{"layers": {"a": {"densty": 0.3}}}"#).is_err());
        assert!(CompressPlan::from_json(r#"{"default": {"bits": 1}, "layers": {}}"#).is_err());
    }
}
