use eie::compress::{
    compress_layer, compress_layer_balanced, search, sensitivity_chart, Budget, CompressPlan,
    DenseLayer, Progress, SearchOptions, SearchResult, Setting,
};
use eie::format::Activation;
use eie::recurrent::{search_sequence, DenseStage};
use eie::{Error, Model, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CompressArgs {
    /// Dense weights: a .npy matrix [out, in] or a .safetensors file.
    input: PathBuf,
    /// The model file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Weight tensor(s) to take from a .safetensors file, in layer order (repeatable); a
    /// recurrent layer is named by its weight_ih or weight_hh tensor. Default: every 2-D
    /// tensor (and every recurrent layer) in natural name order.
    #[arg(long = "tensor", value_name = "NAME")]
    tensors: Vec<String>,
    /// Bias: a tensor name in the .safetensors file or a .npy file (a model of one
    /// fully-connected layer only). By default `<prefix>.bias` is used for `<prefix>.weight`
    /// when present; a recurrent layer's biases are always its `bias_ih` and `bias_hh` tensors.
    #[arg(long, value_name = "FILE_OR_NAME")]
    bias: Option<String>,
    /// Fraction of weights kept by magnitude pruning, in (0, 1]; 1.0 (the default) keeps every
    /// non-zero. One value, or per layer: `name=D,...` (layer names as `eie info` prints them;
    /// a bare value among the pairs is the default for the others).
    #[arg(long, value_name = "D | NAME=D,...")]
    density: Option<String>,
    /// Codebook index bits (2..=8, default 4): 2^bits shared weights, index 0 = zero. One value
    /// or per layer, `name=B,...`.
    #[arg(long, value_name = "B | NAME=B,...")]
    bits: Option<String>,
    /// Processing elements the rows are stored interleaved over. One value or per layer,
    /// `name=N,...`. A layer not given a count is stored at the count (at most its rows) that
    /// makes its file smallest; engines re-interleave at load for their own hardware.
    #[arg(long, value_name = "N | NAME=N,...")]
    pes: Option<String>,
    /// Per-layer settings from a JSON file:
    /// `{"default": {...}, "layers": {"fc1.weight": {"density": 0.08, "bits": 4, "pes": 1}}}`.
    #[arg(long, value_name = "PLAN.json", conflicts_with_all = ["density", "bits", "pes"])]
    plan: Option<PathBuf>,
    /// Load-balance-aware pruning (ESE): every PE's share of a matrix keeps the same number of
    /// weights, for the PE count each layer is given (--pes, default 64), at which it is then
    /// stored.
    #[arg(long, conflicts_with = "calibration")]
    balance: bool,
    /// Apply ReLU after every layer.
    #[arg(long, conflicts_with = "activations")]
    relu: bool,
    /// Per-layer activations, comma-separated (relu|identity), e.g. relu,relu,identity.
    #[arg(long, value_delimiter = ',')]
    activations: Vec<Activation>,
    /// Accuracy-aware compression: calibration inputs, a `[n, inputs]` .npy, or for a model
    /// with recurrent layers `[n, steps, inputs]` sequences, each run from the zero state (u8
    /// values are scaled by 1/255, floats taken as they are). Each layer's sensitivity (each
    /// matrix's: a recurrent layer's W_ih and W_hh apart) is measured on them and the search
    /// picks every density and bit width not given on the command line (or in the plan) for
    /// the smallest file that keeps the budget (--max-accuracy-drop with --labels, or
    /// --min-cosine).
    #[arg(long, value_name = "X.npy")]
    calibration: Option<PathBuf>,
    /// The class of each calibration input: an integer .npy `[n]`, each below the model's
    /// output size. For calibration sequences, one class per sequence, judged on the top-1
    /// output of its last step.
    #[arg(long, value_name = "LABELS.npy", requires = "calibration")]
    labels: Option<PathBuf>,
    /// Budget: top-1 accuracy on the calibration inputs may fall at most P percentage points
    /// below the uncompressed model's. Needs --labels.
    #[arg(
        long,
        value_name = "P",
        requires = "labels",
        conflicts_with = "min_cosine"
    )]
    max_accuracy_drop: Option<f64>,
    /// Budget: the mean cosine similarity of the compressed model's outputs with the
    /// uncompressed model's, on the calibration inputs, must be at least C (for calibration
    /// sequences: the mean over the outputs of every step). Needs no labels.
    #[arg(long, value_name = "C", requires = "calibration")]
    min_cosine: Option<f64>,
    /// Where the search writes its sensitivity chart (default: the model path with
    /// `.sensitivity.svg` appended).
    #[arg(long, value_name = "SVG", requires = "calibration")]
    sensitivity_chart: Option<PathBuf>,
    /// Keep the pruned weights and the k-means codebooks as they are (by default the search
    /// re-fits both by least squares so that each layer's outputs on the calibration inputs
    /// match the uncompressed layer's).
    #[arg(long, requires = "calibration")]
    no_refine: bool,
    /// With --max-accuracy-drop: standard errors of the paired accuracy difference added to
    /// the measured drop before it is held against the budget, so that the budget also holds
    /// on inputs the search did not see. 0 trusts the calibration drop as measured.
    #[arg(long, value_name = "SIGMAS", default_value_t = eie::compress::DEFAULT_MARGIN)]
    margin: f64,
    /// Prune by weight magnitude alone (by default the search prunes by |weight| × the RMS of
    /// its input over the calibration inputs, so weights on inputs that are always zero go
    /// first).
    #[arg(long, requires = "calibration")]
    magnitude_pruning: bool,
}

pub fn run(a: &CompressArgs) -> Result<ExitCode> {
    let plan = match &a.plan {
        Some(p) => CompressPlan::load(p)?,
        None => {
            let mut plan = CompressPlan::default();
            for (setting, spec) in [
                (Setting::Density, &a.density),
                (Setting::Bits, &a.bits),
                (Setting::Pes, &a.pes),
            ] {
                if let Some(spec) = spec {
                    plan.set_from_list(setting, spec)?;
                }
            }
            plan
        }
    };
    plan.default_config().validate()?;
    if same_file(&a.input, &a.output) {
        return Err(Error::InvalidArgument(format!(
            "output {} is the input file; refusing to overwrite it",
            a.output.display()
        )));
    }
    if super::sequence::has_recurrent_tensors(&a.input)? {
        if a.bias.is_some() {
            return Err(Error::InvalidArgument(
                "--bias is for a model of one fully-connected layer; a recurrent layer's \
                 biases are read from its bias_ih and bias_hh tensors (`<prefix>.bias_ih_l0`, \
                 `<prefix>.bias_hh_l0`, ...), and a fully-connected layer's from \
                 `<prefix>.bias`"
                    .into(),
            ));
        }
        let (stages, acts) =
            super::sequence::load_stages(&a.input, &a.tensors, &plan, a.relu, &a.activations)?;
        if let Some(calibration) = &a.calibration {
            return run_search(a, &plan, Searched::Stages(&stages, &acts), calibration);
        }
        return super::sequence::compress(&stages, &acts, &a.output, &plan, a.balance);
    }
    let sp = super::spinner(format!("reading {}", a.input.display()));
    let dense = eie::import::load_dense_layers(&a.input, &a.tensors, a.bias.as_deref())?;
    sp.finish_and_clear();
    if !a.activations.is_empty() && a.activations.len() != dense.len() {
        return Err(Error::InvalidArgument(format!(
            "--activations lists {} functions for {} layers",
            a.activations.len(),
            dense.len()
        )));
    }
    let names: Vec<&str> = dense.iter().map(|d| d.name.as_str()).collect();
    plan.check_names(&names)?;
    let activations: Vec<Activation> = (0..dense.len())
        .map(|i| {
            if a.relu {
                Activation::Relu
            } else {
                a.activations.get(i).copied().unwrap_or_default()
            }
        })
        .collect();
    if let Some(calibration) = &a.calibration {
        return run_search(
            a,
            &plan,
            Searched::Layers(&dense, &activations),
            calibration,
        );
    }
    if a.labels.is_some() {
        return Err(Error::InvalidArgument(
            "--labels is only used with --calibration and --max-accuracy-drop".into(),
        ));
    }
    let pb = super::bar(dense.len() as u64, "compressing");
    let mut layers = Vec::with_capacity(dense.len());
    for (i, d) in dense.iter().enumerate() {
        pb.set_message(format!("compressing {} ({}x{})", d.name, d.rows, d.cols));
        if a.balance {
            let config = plan.config_for(&d.name);
            layers.push(compress_layer_balanced(d, &config, activations[i])?);
            pb.inc(1);
            continue;
        }
        let layer = compress_layer(d, &plan.config_for(&d.name), activations[i])?;
        layers.push(if plan.given_for(&d.name).pes.is_some() {
            layer
        } else {
            layer.compact()?
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let model = Model::new(layers)
        .and_then(|mut m| eie::calibration::choose_formats(&mut m, None).map(|()| m))?;
    model.save(&a.output)?;
    for l in model.layers() {
        println!(
            "{}: {}x{} -> density {:.2} %, {} bits, {} PEs, {} entries ({} padding), {} -> {} ({:.1}x)",
            l.name(),
            l.rows(),
            l.cols(),
            100.0 * l.density(),
            l.bits(),
            l.pes(),
            l.entry_count(),
            l.padding_count(),
            super::human_bytes(l.dense_bytes()),
            super::human_bytes(l.compressed_bytes()),
            l.dense_bytes() as f64 / l.compressed_bytes() as f64
        );
    }
    println!("wrote {}", a.output.display());
    Ok(ExitCode::SUCCESS)
}

/// What the search compresses: fully-connected layers, or the stages of a sequence model, each
/// with its activations.
enum Searched<'a> {
    Layers(&'a [DenseLayer], &'a [Activation]),
    Stages(&'a [DenseStage], &'a [Activation]),
}

/// Accuracy-aware compression: the search, its table, the model and the sensitivity chart.
fn run_search(
    a: &CompressArgs,
    plan: &CompressPlan,
    net: Searched<'_>,
    calibration: &std::path::Path,
) -> Result<ExitCode> {
    let (classes, first_inputs, first_name) = match net {
        Searched::Layers(dense, _) => (dense[dense.len() - 1].rows, dense[0].cols, &dense[0].name),
        Searched::Stages(stages, _) => (
            stages[stages.len() - 1].output_size(),
            stages[0].input_size(),
            &stages[0].matrices()[0].name,
        ),
    };
    let budget = match (a.max_accuracy_drop, a.min_cosine, &a.labels) {
        (Some(points), None, Some(labels)) => Budget::MaxAccuracyDrop {
            points,
            labels: eie::classify::read_labels(labels, classes)?,
        },
        (None, Some(c), None) => Budget::MinCosine(c),
        (None, Some(_), Some(_)) => {
            return Err(Error::InvalidArgument(
                "--labels goes with --max-accuracy-drop, not --min-cosine".into(),
            ))
        }
        _ => {
            return Err(Error::InvalidArgument(
                "--calibration needs a budget: --max-accuracy-drop P with --labels, or \
                 --min-cosine C"
                    .into(),
            ))
        }
    };
    let (n, steps, features, x) = match net {
        Searched::Layers(..) => {
            let (n, features, x) = eie::classify::read_images(calibration)?;
            (n, 1, features, x)
        }
        Searched::Stages(..) => {
            eie::classify::read_sequences(calibration).map_err(|e| match e {
                Error::Shape(m) => Error::Shape(format!(
                    "{m}: a model with recurrent layers takes calibration sequences \
                 [n, steps, {first_inputs}]"
                )),
                e => e,
            })?
        }
    };
    if features != first_inputs {
        return Err(Error::Shape(format!(
            "calibration inputs {} have {features} values each; the first layer `{first_name}` \
             takes {first_inputs}",
            calibration.display(),
        )));
    }
    let options = SearchOptions {
        plan: plan.clone(),
        refine_codebooks: !a.no_refine,
        margin: a.margin,
        activation_aware: !a.magnitude_pruning,
        ..SearchOptions::default()
    };
    match net {
        Searched::Layers(..) => println!(
            "calibration: {n} inputs from {}; budget: {}",
            calibration.display(),
            budget.describe()
        ),
        Searched::Stages(..) => println!(
            "calibration: {n} sequences of {steps} steps from {}; budget: {} ({})",
            calibration.display(),
            budget.describe(),
            match budget {
                Budget::MaxAccuracyDrop { .. } => "labels judged on each sequence's last step",
                Budget::MinCosine(_) => "over the outputs of every step",
            }
        ),
    }
    let pb = super::bar(0, "measuring sensitivity");
    let mut on_progress = |p: Progress| match p {
        Progress::Sensitivity { done, total } => {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
        Progress::Search { evaluations, bytes } => {
            pb.set_message(format!(
                "searching: {evaluations} models tried, best {}",
                super::human_bytes(bytes)
            ));
        }
    };
    match net {
        Searched::Layers(dense, activations) => {
            let result = search(dense, activations, &x, &budget, &options, &mut on_progress);
            pb.finish_and_clear();
            let result = result?;
            write_search(a, &result, &budget, |p| result.model.save(p))
        }
        Searched::Stages(stages, activations) => {
            let result = search_sequence(
                stages,
                activations,
                &x,
                steps,
                &budget,
                &options,
                &mut on_progress,
            );
            pb.finish_and_clear();
            let result = result?;
            write_search(a, &result, &budget, |p| result.model.save(p))
        }
    }
}

/// The search's sensitivity chart, the model (by `save`) and its table.
fn write_search<M>(
    a: &CompressArgs,
    result: &SearchResult<M>,
    budget: &Budget,
    save: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<ExitCode> {
    let chart = a.sensitivity_chart.clone().unwrap_or_else(|| {
        let mut p = a.output.clone().into_os_string();
        p.push(".sensitivity.svg");
        PathBuf::from(p)
    });
    sensitivity_chart(
        &result.sensitivity,
        budget.metric_name(),
        result.dense_metric,
        &chart,
    )?;
    save(&a.output)?;
    print_search(result, budget);
    println!("sensitivity chart: {}", chart.display());
    println!("wrote {}", a.output.display());
    Ok(ExitCode::SUCCESS)
}

fn print_search<M>(r: &SearchResult<M>, budget: &Budget) {
    let metric = match budget {
        Budget::MaxAccuracyDrop { .. } => "top-1 % alone",
        Budget::MinCosine(_) => "cosine alone",
    };
    let width = r
        .layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  {:>8}  {:>4}  {:>4}  {:>10}  {:>10}  {:>7}  {:>13}  codebook",
        "layer", "density", "bits", "PEs", "bytes", "dense", "ratio", metric
    );
    for l in &r.layers {
        println!(
            "{:width$}  {:>7.1}%  {:>4}  {:>4}  {:>10}  {:>10}  {:>6.1}x  {:>13.4}  {}",
            l.name,
            100.0 * l.density,
            l.bits,
            l.pes,
            super::human_bytes(l.bytes),
            super::human_bytes(l.dense_bytes),
            l.dense_bytes as f64 / l.bytes as f64,
            l.metric,
            if l.refined { "re-fitted" } else { "k-means" }
        );
    }
    let (bytes, dense): (usize, usize) = r
        .layers
        .iter()
        .fold((0, 0), |(b, d), l| (b + l.bytes, d + l.dense_bytes));
    println!(
        "model: {} -> {} ({:.1}x smaller); {} on the calibration inputs: uncompressed {:.4}, \
         compressed {:.4} (before the final re-fit: {:.4}); {} models evaluated",
        super::human_bytes(dense),
        super::human_bytes(bytes),
        dense as f64 / bytes as f64,
        budget.metric_name(),
        r.dense_metric,
        r.metric,
        r.unrefined_metric,
        r.evaluations
    );
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
