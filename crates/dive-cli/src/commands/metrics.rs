//! `dive metrics`: the orchestrator's Prometheus text exposition.

use std::process::ExitCode;

use dive_orchestrator::paths::StackPaths;
use dive_orchestrator::supervisor::Client;

use super::stack_runtime::runtime;
use crate::context::Context;

pub fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let text = rt.block_on(async {
        let store = super::open_store(ctx).await?;
        let facts = dive_orchestrator::metrics::collect(&store).await?;
        let mut live = Vec::new();
        for paths in StackPaths::all(&ctx.home)? {
            if let Ok(mut c) = Client::connect(&paths).await
                && let Ok(s) = c.status().await
            {
                live.push(s);
            }
        }
        anyhow::Ok(dive_orchestrator::metrics::render(&facts, &live))
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
