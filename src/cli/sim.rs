use eie::error::Error;
use eie::format::SequenceModel;
use eie::sim::paper::{self, PaperRun, SweepPoint};
use eie::sim::{chart, simulate_sequence, SimConfig, SimResult, Simulator};
use eie::{Model, Precision, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which study `--sweep` reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sweep {
    /// Load-balance efficiency against FIFO depth 1..256 (at --pes).
    Fifo,
    /// Speed-up against 1..256 PEs (at --fifo).
    Pes,
}

#[derive(clap::Args)]
pub struct SimArgs {
    /// The model file (not with --paper); a model with recurrent layers is simulated over one
    /// sequence, `--input` `[steps, in]`, reporting cycles per time step.
    #[arg(required_unless_present = "paper", conflicts_with = "paper")]
    model: Option<PathBuf>,
    /// Input activations (.npy, [in] or [batch, in]; for a recurrent model one sequence,
    /// [steps, in]); required with a model.
    #[arg(long, required_unless_present = "paper")]
    input: Option<PathBuf>,
    /// Where to write the simulated output (.npy, float32).
    #[arg(long, requires = "model")]
    output: Option<PathBuf>,
    /// Simulate the paper's nine benchmark layers (seeded random weights and inputs).
    #[arg(long)]
    paper: bool,
    /// With --paper: reproduce the paper's FIFO-depth or PE-count study (CSV + SVG chart).
    #[arg(long, value_enum, requires = "paper")]
    sweep: Option<Sweep>,
    /// Processing elements (1..=1024).
    #[arg(long, default_value_t = 64)]
    pes: usize,
    /// Activation FIFO depth (1..=256): a FIFO of depth d holds d − 1 activations; 1 = no FIFO.
    #[arg(long, default_value_t = 8)]
    fifo: usize,
    /// Sparse-matrix SRAM line width in entries.
    #[arg(long, default_value_t = 8)]
    line: usize,
    /// Clock in MHz.
    #[arg(long, default_value_t = 800.0)]
    clock_mhz: f64,
    /// Source/destination activation registers per PE (a round holds this × PEs activations).
    #[arg(long, default_value_t = 64)]
    act_regs: usize,
    /// Simulate EIE's 16-bit fixed-point datapath instead of f32.
    #[arg(long)]
    fixed16: bool,
    /// Seed of the paper layers and inputs.
    #[arg(long, default_value_t = eie::paper::DEFAULT_SEED)]
    seed: u64,
    /// Folder for the sweep's CSV and SVG files.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Also print every PE's counters.
    #[arg(long)]
    per_pe: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).expect("plain data serialises")
}

pub fn run(a: &SimArgs) -> Result<ExitCode> {
    let cfg = SimConfig {
        pes: a.pes,
        fifo_depth: a.fifo,
        line_entries: a.line,
        clock_mhz: a.clock_mhz,
        act_regs_per_pe: a.act_regs,
    };
    cfg.validate()?;
    match (a.paper, a.sweep, &a.model, &a.input) {
        (true, None, _, _) => paper_table(a, &cfg),
        (true, Some(s), _, _) => sweep(a, &cfg, s),
        (false, _, Some(model), Some(input)) => model_run(a, &cfg, model, input),
        _ => Err(Error::InvalidArgument(
            "give a model and --input, or --paper".into(),
        )),
    }
}

fn model_run(a: &SimArgs, cfg: &SimConfig, model: &Path, input: &Path) -> Result<ExitCode> {
    if super::sequence::is_sequence_file(model)? {
        return sequence_run(a, cfg, model, input);
    }
    let model = Model::load(model)?;
    let tensor = eie::import::read_npy(input)?;
    let (batch, values) = eie::import::read_input(input, model.input_size())?;
    let precision = if a.fixed16 {
        Precision::Fixed16
    } else {
        Precision::F32
    };
    let sp = super::spinner("simulating");
    let sim = Simulator::new(&model, cfg, precision)?;
    let r = sim.run(&values)?;
    sp.finish_and_clear();
    if let Some(out) = &a.output {
        let shape = if tensor.shape.len() == 1 {
            vec![model.output_size()]
        } else {
            vec![batch, model.output_size()]
        };
        eie::import::write_npy(out, &shape, &r.output)?;
        eprintln!("wrote {} {:?}", out.display(), shape);
    }
    if a.json {
        println!("{}", json(&r));
    } else {
        print_result(&r, a.per_pe);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_result(r: &SimResult, per_pe: bool) {
    let c = &r.config;
    println!(
        "EIE at {} PEs, FIFO {}, {}-entry SRAM lines, {} MHz, {} datapath, batch {}",
        c.pes,
        c.fifo_depth,
        c.line_entries,
        c.clock_mhz,
        r.precision.name(),
        r.batch
    );
    println!(
        "{:<24} {:>9} {:>10} {:>10} {:>7} {:>6} {:>10} {:>9} {:>7}",
        "layer", "size", "cycles", "time µs", "theor.", "LB eff", "MACs", "padding", "pieces"
    );
    for l in &r.layers {
        println!(
            "{:<24} {:>9} {:>10} {:>10.2} {:>7.2} {:>6.3} {:>10} {:>9} {:>7}",
            l.name,
            format!("{}x{}", l.rows, l.cols),
            l.cycles,
            l.time_us,
            l.theoretical_us,
            l.load_balance_efficiency,
            l.counters.useful_macs,
            l.counters.padding_entries,
            format!("{}x{}", l.row_pieces, l.col_pieces)
        );
    }
    let k = &r.counters;
    println!(
        "total: {} cycles, {:.3} µs (theoretical {:.3} µs), load-balance efficiency {:.3}",
        r.cycles, r.time_us, r.theoretical_us, r.load_balance_efficiency
    );
    println!(
        "work: {} useful MACs, {} padding entries, {} empty slices, {} broadcasts, \
         {} empty LNZD groups, {} CCU stall cycles, {} accumulator bypasses",
        k.useful_macs,
        k.padding_entries,
        k.empty_slices,
        k.broadcasts,
        k.lnzd_empty_cycles,
        k.ccu_stall_cycles,
        k.accumulator_bypasses
    );
    println!(
        "SRAM: {} pointer reads (16-bit), {} matrix line reads; energy {:.1} nJ \
         (MAC {:.1}, pointer {:.1}, matrix {:.1} nJ)",
        k.pointer_reads,
        k.matrix_reads,
        r.energy.total_nj,
        r.energy.mac_pj / 1e3,
        r.energy.pointer_sram_pj / 1e3,
        r.energy.matrix_sram_pj / 1e3
    );
    let busy: Vec<u64> = r.pes.iter().map(|p| p.busy).collect();
    let (lo, hi) = (
        busy.iter().min().copied().unwrap_or(0),
        busy.iter().max().copied().unwrap_or(0),
    );
    println!(
        "per PE: busy {lo}..{hi} cycles (mean {:.1}); starved {:.1}, drained {:.1}, stalled {:.1} on average",
        busy.iter().sum::<u64>() as f64 / busy.len() as f64,
        mean(r, |p| p.starved),
        mean(r, |p| p.drained),
        mean(r, |p| p.stalled)
    );
    if per_pe {
        println!(
            "{:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "PE", "busy", "starved", "drained", "stalled", "MACs", "padding"
        );
        for (i, p) in r.pes.iter().enumerate() {
            println!(
                "{i:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
                p.busy, p.starved, p.drained, p.stalled, p.useful_macs, p.padding_entries
            );
        }
    }
}

fn mean(r: &SimResult, f: impl Fn(&eie::sim::PeStats) -> u64) -> f64 {
    r.pes.iter().map(f).sum::<u64>() as f64 / r.pes.len().max(1) as f64
}

fn paper_table(a: &SimArgs, cfg: &SimConfig) -> Result<ExitCode> {
    let sp = super::spinner("generating and simulating the nine paper layers");
    let start = std::time::Instant::now();
    let runs = paper::run_all(cfg, a.seed)?;
    let secs = start.elapsed().as_secs_f64();
    sp.finish_and_clear();
    if a.json {
        println!("{}", json(&runs));
        return Ok(ExitCode::SUCCESS);
    }
    print_paper(&runs, cfg);
    eprintln!("(generated and simulated in {secs:.2} s)");
    Ok(ExitCode::SUCCESS)
}

fn print_paper(runs: &[PaperRun], cfg: &SimConfig) {
    println!(
        "Paper layers at {} PEs, FIFO {}, {} MHz (batch 1; µs)",
        cfg.pes, cfg.fifo_depth, cfg.clock_mhz
    );
    println!(
        "{:<8} {:>11} {:>8} {:>9} {:>12} {:>7} {:>10} {:>12} {:>7}",
        "layer",
        "in x out",
        "cycles",
        "sim µs",
        "paper actual",
        "diff",
        "sim theor.",
        "paper theor.",
        "LB eff"
    );
    for r in runs {
        println!(
            "{:<8} {:>11} {:>8} {:>9.2} {:>12.1} {:>6.1}% {:>10.2} {:>12.1} {:>7.3}",
            r.layer,
            format!("{}x{}", r.inputs, r.outputs),
            r.cycles,
            r.time_us,
            r.paper_actual_us,
            100.0 * r.deviation,
            r.theoretical_us,
            r.paper_theoretical_us,
            r.load_balance_efficiency
        );
    }
    let within = runs.iter().filter(|r| r.deviation.abs() <= 0.15).count();
    println!(
        "{within} of {} layers within 15 % of the paper's EIE actual",
        runs.len()
    );
}

fn sweep(a: &SimArgs, cfg: &SimConfig, which: Sweep) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.out_dir).map_err(|e| Error::io(&a.out_dir, e))?;
    let sp = super::spinner("sweeping the nine paper layers");
    let (points, stem): (Vec<SweepPoint>, &str) = match which {
        Sweep::Fifo => (paper::fifo_sweep(cfg, a.seed)?, "sim_fifo_sweep"),
        Sweep::Pes => (paper::pe_sweep(cfg, a.seed)?, "sim_pe_sweep"),
    };
    sp.finish_and_clear();
    let csv = a.out_dir.join(format!("{stem}.csv"));
    let svg = a.out_dir.join(format!("{stem}.svg"));
    chart::write_csv(&points, &csv)?;
    match which {
        Sweep::Fifo => chart::fifo_chart(&points, cfg.pes, &svg)?,
        Sweep::Pes => chart::pe_chart(&points, cfg.fifo_depth, &svg)?,
    }
    if a.json {
        println!("{}", json(&points));
    } else {
        let (label, key): (&str, fn(&SweepPoint) -> usize) = match which {
            Sweep::Fifo => ("FIFO depth", |p| p.fifo_depth),
            Sweep::Pes => ("PEs", |p| p.pes),
        };
        let mut xs: Vec<usize> = points.iter().map(key).collect();
        xs.sort_unstable();
        xs.dedup();
        print!("{:<8}", "layer");
        for x in &xs {
            print!(" {x:>6}");
        }
        println!(
            "   ({label}; {})",
            match which {
                Sweep::Fifo => "load-balance efficiency",
                Sweep::Pes => "speed-up over 1 PE",
            }
        );
        let mut layers: Vec<&str> = Vec::new();
        for p in &points {
            if !layers.contains(&p.layer.as_str()) {
                layers.push(&p.layer);
            }
        }
        for l in layers {
            print!("{l:<8}");
            for x in &xs {
                let p = points.iter().find(|p| p.layer == l && key(p) == *x);
                let v = p.map_or(f64::NAN, |p| match which {
                    Sweep::Fifo => p.load_balance_efficiency,
                    Sweep::Pes => p.speedup,
                });
                print!(" {v:>6.2}");
            }
            println!();
        }
    }
    eprintln!("wrote {} and {}", csv.display(), svg.display());
    Ok(ExitCode::SUCCESS)
}

/// `eie sim` of a model with recurrent layers: one sequence `[T, in]` from the zero state,
/// cycles per time step (see `eie::sim::sequence`).
fn sequence_run(a: &SimArgs, cfg: &SimConfig, model: &Path, input: &Path) -> Result<ExitCode> {
    let model = SequenceModel::load(model)?;
    let x = eie::import::read_npy(input)?;
    let n_in = model.input_size();
    let steps = match x.shape.as_slice() {
        [t, n] if *n == n_in && *t > 0 => *t,
        other => {
            return Err(Error::Shape(format!(
                "input {} has shape {other:?}; the simulator takes one sequence, [steps, {n_in}]",
                input.display()
            )))
        }
    };
    let precision = if a.fixed16 {
        Precision::Fixed16
    } else {
        Precision::F32
    };
    let sp = super::spinner("simulating");
    let r = simulate_sequence(&model, &x.data, steps, cfg, precision)?;
    sp.finish_and_clear();
    if let Some(out) = &a.output {
        let shape = vec![steps, model.output_size()];
        eie::import::write_npy(out, &shape, &r.output)?;
        eprintln!("wrote {} {:?}", out.display(), shape);
    }
    if a.json {
        println!("{}", json(&r));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "EIE at {} PEs, FIFO {}, {}-entry SRAM lines, {} MHz, {} datapath, {} steps",
        cfg.pes,
        cfg.fifo_depth,
        cfg.line_entries,
        cfg.clock_mhz,
        precision.name(),
        steps
    );
    println!(
        "{:<24} {:>9} {:>14} {:>12} {:>7} {:>10} {:>9}",
        "part", "size", "cycles/step", "µs/step", "LB eff", "MACs/step", "padding"
    );
    let per = |v: u64| v as f64 / steps as f64;
    for s in &r.stages {
        for m in &s.matrices {
            println!(
                "{:<24} {:>9} {:>14.1} {:>12.3} {:>7.3} {:>10.1} {:>9}",
                m.name,
                format!("{}x{}", m.rows, m.cols),
                per(m.cycles),
                per(m.cycles) / cfg.clock_mhz,
                m.load_balance_efficiency,
                per(m.counters.useful_macs),
                m.counters.padding_entries / steps as u64
            );
        }
        if s.kind != "fc" {
            println!(
                "{:<24} {:>9} {:>14} {:>12.3} {:>7} {:>10} {:>9}",
                format!("{} cell update", s.name),
                s.kind,
                s.cell_update_cycles_per_step,
                s.cell_update_cycles_per_step as f64 / cfg.clock_mhz,
                "-",
                "-",
                "-"
            );
        }
    }
    let (lo, hi) = (
        r.step_cycles.iter().min().copied().unwrap_or(0),
        r.step_cycles.iter().max().copied().unwrap_or(0),
    );
    println!(
        "per step: {:.1} cycles ({lo}..{hi}), {:.3} µs; total {} cycles, {:.3} µs; \
         load-balance efficiency of the sparse products {:.3}",
        r.cycles_per_step,
        r.time_per_step_us,
        r.cycles,
        r.cycles as f64 / cfg.clock_mhz,
        r.load_balance_efficiency
    );
    println!(
        "(cell update: one hidden unit per cycle per PE, pipeline latency {} cycles for an \
         LSTM, {} for a GRU; the products run one after the other)",
        eie::sim::sequence::LSTM_CELL_LATENCY,
        eie::sim::sequence::GRU_CELL_LATENCY
    );
    if a.per_pe {
        let pes = eie::sim::sequence::pe_totals(&r);
        println!(
            "{:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "PE", "busy", "starved", "drained", "stalled", "MACs", "padding"
        );
        for (i, p) in pes.iter().enumerate() {
            println!(
                "{i:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
                p.busy, p.starved, p.drained, p.stalled, p.useful_macs, p.padding_entries
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
