//! The WGSL kernels against the host's view of them, with naga (no GPU needed). Every kernel
//! parses and validates under the default capabilities as the module the backend compiles
//! (prelude + the kernel's file); each file in `shaders/` is one kernel with one compute entry
//! point named after it. Then, for every kernel, what `src/gpu/kernels/<name>.rs` says about it:
//! its params struct has the WGSL struct's members in order, with the same offsets, sizes and
//! total size; its bindings are the ones the entry point uses, with the same numbers and
//! access; the override constants the host passes are exactly the ones the module declares; the
//! WGSL `const`s that cannot be overrides equal the host constants they mirror; and its
//! workgroup memory, with the host's sizes, fits the WebGPU default of 16 KiB (the column walk's
//! is exactly what the planner budgets).
#![cfg(feature = "gpu")]

use eie::gpu::kernels::{Access, Kernel, Prelude};
use eie::schedule::{DeviceLimits, EIE_FIXED_WORKGROUP_WORDS, WORKGROUP_SIZE};
use naga::{AddressSpace, ArraySize, Expression, Handle, Literal, Module, ScalarKind, TypeInner};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

fn shaders_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

fn wgsl_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The module the backend compiles for `kernel`, parsed and validated.
fn module(kernel: Kernel) -> (Module, naga::valid::ModuleInfo) {
    let src = kernel.module_source();
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}: {}", kernel.name(), e.emit_to_string(&src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {}", kernel.name(), e.emit_to_string(&src)));
    (module, info)
}

/// Values of a module's global expressions, with the named overrides set from `constants`.
struct Eval<'a> {
    module: &'a Module,
    constants: HashMap<&'a str, f64>,
}

impl Eval<'_> {
    fn expr(&self, e: Handle<Expression>) -> u64 {
        match self.module.global_expressions[e] {
            Expression::Literal(l) => match l {
                Literal::U32(v) => v as u64,
                Literal::I32(v) => u64::try_from(v).expect("a size"),
                Literal::AbstractInt(v) => u64::try_from(v).expect("a size"),
                Literal::Bool(b) => b as u64,
                other => panic!("not a size: {other:?}"),
            },
            Expression::Constant(c) => self.expr(self.module.constants[c].init),
            Expression::Override(o) => self.override_value(o),
            Expression::Binary { op, left, right } => {
                let (a, b) = (self.expr(left), self.expr(right));
                match op {
                    naga::BinaryOperator::Add => a + b,
                    naga::BinaryOperator::Subtract => a - b,
                    naga::BinaryOperator::Multiply => a * b,
                    naga::BinaryOperator::Divide => a / b,
                    other => panic!("not a size expression: {other:?}"),
                }
            }
            ref other => panic!("not a size expression: {other:?}"),
        }
    }

    fn override_value(&self, o: Handle<naga::Override>) -> u64 {
        let ov = &self.module.overrides[o];
        if let Some(v) = ov.name.as_deref().and_then(|n| self.constants.get(n)) {
            return *v as u64;
        }
        let init = ov
            .init
            .unwrap_or_else(|| panic!("override {:?} has no value", ov.name));
        self.expr(init)
    }

    /// Bytes of a type, arrays sized by overrides included.
    fn bytes(&self, ty: Handle<naga::Type>) -> u64 {
        match self.module.types[ty].inner {
            TypeInner::Array { size, stride, .. } => {
                let n = match size {
                    ArraySize::Constant(n) => n.get() as u64,
                    ArraySize::Pending(o) => self.override_value(o),
                    ArraySize::Dynamic => panic!("a runtime-sized array in workgroup memory"),
                };
                n * stride as u64
            }
            ref inner => inner.size(self.module.to_ctx()) as u64,
        }
    }

    /// Workgroup memory the module declares.
    fn workgroup_bytes(&self) -> u64 {
        self.module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == AddressSpace::WorkGroup)
            .map(|(_, v)| self.bytes(v.ty))
            .sum()
    }
}

fn eval<'a>(module: &'a Module, constants: &[(&'a str, f64)]) -> Eval<'a> {
    Eval {
        module,
        constants: constants.iter().copied().collect(),
    }
}

#[test]
fn every_kernel_validates_with_naga() {
    let mut names: Vec<String> = Kernel::ALL.iter().map(|k| k.name().to_string()).collect();
    names.sort();
    assert_eq!(
        wgsl_files(&shaders_dir()),
        names,
        "one kernel per file in shaders/"
    );
    for &kernel in Kernel::ALL {
        let file =
            std::fs::read_to_string(shaders_dir().join(format!("{}.wgsl", kernel.name()))).unwrap();
        assert_eq!(
            kernel.source(),
            file,
            "{} is built from its file",
            kernel.name()
        );
        let (module, _) = module(kernel);
        let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            entries,
            vec![kernel.name().to_string()],
            "{}",
            kernel.name()
        );
        assert_eq!(module.entry_points[0].stage, naga::ShaderStage::Compute);
        // The host's workgroup size for the kernel: WORKGROUP_SIZE for every EIE kernel and
        // baseline, its own for the recurrent cell step (checked against the host's constant
        // by wgsl_consts_equal_the_host_constants_they_mirror).
        let wg = kernel
            .mirrored_consts()
            .iter()
            .find(|m| m.0 == "WG")
            .map_or(WORKGROUP_SIZE, |m| m.1);
        assert!(
            wg == WORKGROUP_SIZE || kernel == Kernel::RecurrentCell,
            "{}: WG {wg}",
            kernel.name()
        );
        assert_eq!(
            module.entry_points[0].workgroup_size,
            [wg as u32, 1, 1],
            "{}: @workgroup_size is the host's WG",
            kernel.name()
        );
        let bytes = eval(&module, &kernel.example_constants()).workgroup_bytes();
        assert!(
            bytes <= 16384,
            "{}: {bytes} bytes of workgroup memory",
            kernel.name()
        );
    }
}

#[test]
fn every_prelude_is_its_file_and_declares_no_entry_point() {
    let mut names: Vec<String> = Prelude::ALL.iter().map(|p| p.name().to_string()).collect();
    names.sort();
    assert_eq!(wgsl_files(&shaders_dir().join("common")), names);
    for &prelude in Prelude::ALL {
        let file = std::fs::read_to_string(
            shaders_dir()
                .join("common")
                .join(format!("{}.wgsl", prelude.name())),
        )
        .unwrap();
        assert_eq!(prelude.source(), file);
        let module = naga::front::wgsl::parse_str(prelude.source()).unwrap();
        assert!(module.entry_points.is_empty());
    }
}

/// A scalar member's type as WGSL and Rust spell it (`u32`, `i32`, `f32`).
fn scalar_name(inner: &TypeInner) -> String {
    match *inner {
        TypeInner::Scalar(s) => {
            let kind = match s.kind {
                ScalarKind::Uint => "u",
                ScalarKind::Sint => "i",
                ScalarKind::Float => "f",
                ScalarKind::Bool => "bool",
                other => panic!("{other:?}"),
            };
            format!("{kind}{}", 8 * s.width)
        }
        ref other => format!("{other:?}"),
    }
}

#[test]
fn every_params_struct_matches_its_wgsl_struct() {
    for &kernel in Kernel::ALL {
        let (module, _) = module(kernel);
        let name = kernel.name();
        let params = kernel.params();
        // The uniform at binding 0 of group 0.
        let (_, var) = module
            .global_variables
            .iter()
            .find(|(_, v)| {
                v.binding
                    .as_ref()
                    .is_some_and(|b| b.group == 0 && b.binding == 0)
            })
            .unwrap_or_else(|| panic!("{name}: no binding 0"));
        assert_eq!(var.space, AddressSpace::Uniform, "{name}");
        let TypeInner::Struct { ref members, span } = module.types[var.ty].inner else {
            panic!("{name}: binding 0 is not a struct");
        };
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let layout = layouter[var.ty];
        assert_eq!(layout.size, span, "{name}");
        assert_eq!(
            params.size, span as usize,
            "{name}: {} is as large as the WGSL struct",
            params.name
        );
        let wgsl: Vec<(String, usize, usize, String)> = members
            .iter()
            .map(|m| {
                let inner = &module.types[m.ty].inner;
                (
                    m.name.clone().unwrap_or_default(),
                    m.offset as usize,
                    layouter[m.ty].size as usize,
                    scalar_name(inner),
                )
            })
            .collect();
        let rust: Vec<(String, usize, usize, String)> = params
            .fields
            .iter()
            .map(|f| (f.name.to_string(), f.offset, f.size, f.ty.to_string()))
            .collect();
        assert_eq!(
            rust, wgsl,
            "{name}: {} (name, offset, size, type) against the WGSL `Params`",
            params.name
        );
        assert_eq!(params.size % layout.alignment.round_up(1) as usize, 0);
    }
}

#[test]
fn every_binding_the_host_makes_is_one_the_entry_point_uses() {
    for &kernel in Kernel::ALL {
        let (module, info) = module(kernel);
        let uses = info.get_entry_point(0);
        let mut wgsl: Vec<(u32, String, Access)> = module
            .global_variables
            .iter()
            .filter(|&(h, _)| !uses[h].is_empty())
            .filter_map(|(_, v)| {
                let b = v.binding.as_ref()?;
                assert_eq!(b.group, 0, "{}: one bind group", kernel.name());
                let access = match v.space {
                    AddressSpace::Uniform => Access::Uniform,
                    AddressSpace::Storage { access }
                        if access.contains(naga::StorageAccess::STORE) =>
                    {
                        Access::ReadWrite
                    }
                    AddressSpace::Storage { .. } => Access::Read,
                    other => panic!("{}: binding in {other:?}", kernel.name()),
                };
                Some((b.binding, v.name.clone().unwrap_or_default(), access))
            })
            .collect();
        wgsl.sort_by_key(|b| b.0);
        let host: Vec<(u32, String, Access)> = kernel
            .bindings()
            .iter()
            .map(|b| (b.index, b.name.to_string(), b.access))
            .collect();
        assert_eq!(host, wgsl, "{}: bindings", kernel.name());
    }
}

#[test]
fn the_host_sets_exactly_the_overrides_each_module_declares() {
    for &kernel in Kernel::ALL {
        let (module, _) = module(kernel);
        let declared: BTreeSet<String> = module
            .overrides
            .iter()
            .filter_map(|(_, o)| o.name.clone())
            .collect();
        let constants = kernel.example_constants();
        let set: BTreeSet<String> = constants.iter().map(|c| c.0.to_string()).collect();
        assert_eq!(
            set.len(),
            constants.len(),
            "{}: one value each",
            kernel.name()
        );
        assert_eq!(set, declared, "{}: overrides", kernel.name());
    }
}

#[test]
fn wgsl_consts_equal_the_host_constants_they_mirror() {
    for &kernel in Kernel::ALL {
        let (module, _) = module(kernel);
        let e = eval(&module, &[]);
        let mirrored = kernel.mirrored_consts();
        assert!(
            mirrored.iter().any(|m| m.0 == "WG"),
            "{}: WG is checked",
            kernel.name()
        );
        for (name, value) in mirrored {
            let (_, c) = module
                .constants
                .iter()
                .find(|(_, c)| c.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{}: no const {name}", kernel.name()));
            assert_eq!(
                e.expr(c.init),
                value as u64,
                "{}: const {name} against the host's",
                kernel.name()
            );
        }
    }
}

#[test]
fn the_column_walk_declares_the_workgroup_memory_the_planner_budgets() {
    let (module, _) = module(Kernel::EieSpmv);
    for kib in [16u32, 32, 48, 64] {
        let limits = DeviceLimits {
            max_compute_workgroup_storage_size: kib << 10,
            ..DeviceLimits::default()
        };
        let acc = limits.eie_acc_words();
        let mut constants = Kernel::EieSpmv.example_constants();
        for c in &mut constants {
            if c.0 == "ACC_WORDS" {
                c.1 = acc as f64;
            }
        }
        let bytes = eval(&module, &constants).workgroup_bytes();
        assert_eq!(
            bytes,
            4 * (acc + EIE_FIXED_WORKGROUP_WORDS) as u64,
            "{kib} KiB"
        );
        assert!(bytes <= (kib as u64) << 10, "{kib} KiB: {bytes} bytes");
    }
}
