use eie::Result;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &DevicesArgs) -> Result<ExitCode> {
    let adapters = eie::gpu::list_adapters();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&adapters).expect("plain data serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if adapters.is_empty() {
        println!("no GPU adapter found (WGPU_BACKEND may restrict the search)");
        return Ok(ExitCode::FAILURE);
    }
    for (i, d) in adapters.iter().enumerate() {
        println!("[{i}] {} ({}, {})", d.name, d.backend, d.device_type);
        println!("    driver: {}", d.driver);
        println!(
            "    features: timestamps {} (inside passes {}), f16 {}, subgroups {} (sizes {}..={})",
            d.timestamps,
            d.timestamps_inside_passes,
            d.f16,
            d.subgroups,
            d.subgroup_sizes.0,
            d.subgroup_sizes.1
        );
        println!(
            "    limits: storage binding {}, buffer {}, workgroup memory {} B, {} invocations \
             per workgroup, {} workgroups per dimension",
            super::human_bytes(d.max_storage_buffer_binding_size as usize),
            super::human_bytes(d.max_buffer_size as usize),
            d.max_compute_workgroup_storage_size,
            d.max_compute_invocations_per_workgroup,
            d.max_compute_workgroups_per_dimension
        );
    }
    Ok(ExitCode::SUCCESS)
}
