//! `eie plan`: the GPU schedule of a model or of the paper's layers without a GPU: per layer
//! and kernel, workgroups, dispatches, modelled bytes, entries per invocation and modelled
//! microseconds on a device profile.

use eie::schedule::cost::latency::DeviceProfile;
use eie::schedule::cost::{model_costs_on, KernelCost};
use eie::schedule::PePlan;
use eie::{Model, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// A model file (or use --paper).
    #[arg(required_unless_present = "paper", conflicts_with = "paper")]
    model: Option<PathBuf>,
    /// The paper's nine layers (Table III sizes and densities, seeded weights and inputs).
    #[arg(long)]
    paper: bool,
    /// Inputs per run.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Input for a model file (.npy, [in] or [batch, in]); default: a seeded ReLU-like input
    /// with --input-density non-zeros.
    #[arg(long, conflicts_with = "paper")]
    input: Option<PathBuf>,
    /// Share of non-zero activations of the generated input.
    #[arg(long, default_value_t = 0.35)]
    input_density: f64,
    /// PEs per layer; default: chosen per layer (see docs/GPU.md).
    #[arg(long)]
    pes: Option<usize>,
    /// Seed of generated layers and inputs.
    #[arg(long, default_value_t = eie::paper::DEFAULT_SEED)]
    seed: u64,
    /// Device profile of the latency model: h100, lavapipe, or auto (the class of the
    /// adapter the GPU engine would pick: lavapipe for a CPU adapter, h100 otherwise or when
    /// there is none). The schedule is the one the engine uses on that device.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// The profile `--device` names.
fn profile(name: &str) -> Result<DeviceProfile> {
    if name.eq_ignore_ascii_case("auto") {
        return Ok(auto_profile());
    }
    DeviceProfile::named(name)
}

/// The class of the adapter the engine would choose: lavapipe when the best one is a CPU
/// adapter, h100 for any other, and h100 without an adapter or without the `gpu` feature.
fn auto_profile() -> DeviceProfile {
    #[cfg(feature = "gpu")]
    {
        let rank = |t: &str| match t {
            "DiscreteGpu" => 0,
            "IntegratedGpu" => 1,
            "VirtualGpu" => 2,
            "Cpu" => 3,
            _ => 4,
        };
        if let Some(a) = eie::gpu::list_adapters()
            .iter()
            .min_by_key(|a| rank(&a.device_type))
        {
            if a.device_type == "Cpu" {
                return DeviceProfile::LAVAPIPE;
            }
        }
    }
    DeviceProfile::H100
}

pub fn run(a: &PlanArgs) -> Result<ExitCode> {
    if a.batch == 0 {
        return Err(eie::Error::InvalidArgument(
            "--batch must be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&a.input_density) {
        return Err(eie::Error::InvalidArgument(format!(
            "--input-density {} is not in [0, 1]",
            a.input_density
        )));
    }
    let pes = a.pes.map_or(PePlan::Auto, PePlan::Fixed);
    // The WebGPU default limits (a plan that fits them fits every device), with the
    // workgroup target and batch tile the engine uses on the profile's device.
    let profile = profile(&a.device)?;
    let mut costs: Vec<KernelCost> = Vec::new();
    if a.paper {
        let pb = super::bar(eie::paper::PAPER_LAYERS.len() as u64, "planning");
        for p in &eie::paper::PAPER_LAYERS {
            let model = p.model(64, a.seed)?;
            costs.extend(model_costs_on(
                &model,
                &p.input(a.batch, a.seed),
                pes,
                &profile,
            )?);
            pb.inc(1);
        }
        pb.finish_and_clear();
    } else {
        let path = a
            .model
            .as_ref()
            .expect("clap requires a model without --paper");
        let model = Model::load(path)?;
        let input = match &a.input {
            Some(p) => eie::import::read_input(p, model.input_size())?.1,
            None => (0..a.batch)
                .flat_map(|b| {
                    eie::synth::activations(
                        model.input_size(),
                        a.input_density,
                        a.seed.wrapping_add(b as u64),
                    )
                })
                .collect(),
        };
        costs = model_costs_on(&model, &input, pes, &profile)?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "device": profile,
                "layers": costs,
            }))
            .expect("plain data serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "modelled µs: latency model, device profile `{}` (--device; see docs/GPU.md)",
        profile.name
    );
    println!(
        "{:<10} {:<19} {:>5} {:>6} {:>4} {:>10} {:>10} {:>6} {:>10} {:>10} {:>8} {:>8} {:>12}",
        "layer",
        "kernel",
        "batch",
        "wgs",
        "disp",
        "entries",
        "metadata",
        "meta/e",
        "activ.",
        "output",
        "e/lane",
        "max",
        format!("modelled µs ({})", profile.name)
    );
    for c in &costs {
        println!(
            "{:<10} {:<19} {:>5} {:>6} {:>4} {:>10} {:>10} {:>6.2} {:>10} {:>10} {:>8.2} {:>8} {:>12.1}",
            c.layer,
            c.kernel,
            c.batch,
            c.workgroups,
            c.dispatches,
            super::human_bytes(c.bytes.entries as usize),
            super::human_bytes(c.bytes.metadata as usize),
            c.metadata_ratio(),
            super::human_bytes(c.bytes.activations as usize),
            super::human_bytes(c.bytes.output as usize),
            c.entries_per_lane.mean,
            c.entries_per_lane.max,
            c.modelled_us.unwrap_or(f64::NAN)
        );
    }
    Ok(ExitCode::SUCCESS)
}
