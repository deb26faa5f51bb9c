//! `databuild taint` and `databuild cancel`: through the build that holds
//! the store when there is one, else on the store directly.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use databuild_core::{BelSink, Graph, Orchestrator};

use crate::CliError;
use crate::control::{self, ControlOp};
use crate::graph_file::GraphFile;
use crate::home::{Home, Reached};

fn refused(home: &Home, reply: control::ControlReply) -> Result<(), CliError> {
    if reply.ok {
        Ok(())
    } else {
        Err(CliError::Control {
            socket: home.control_socket(),
            reason: reply.error.unwrap_or_else(|| "refused".into()),
        })
    }
}

pub(super) async fn taint(home: &Home, refs: &[String]) -> Result<ExitCode, CliError> {
    let wanted = super::parse_refs(refs)?;
    let op = ControlOp::Taint {
        partitions: refs.to_vec(),
    };
    match home.take_or_send(&op).await? {
        Reached::Answered(reply) => refused(home, reply)?,
        Reached::Held(bel) => {
            let bel: Arc<dyn BelSink> = Arc::new(bel);
            let state = super::state_of(&*bel).await?;
            let open: Vec<String> = state
                .requests()
                .filter(|r| !r.is_terminal())
                .map(|r| r.build_request_id.clone())
                .collect();
            if !open.is_empty() {
                // Loading would resume them, here, with no graph to run.
                return Err(CliError::Control {
                    socket: home.control_socket(),
                    reason: format!(
                        "build request(s) {} were left open by a build that stopped: run `databuild build` to take them up (or `databuild cancel <id>`), then taint",
                        open.join(", ")
                    ),
                });
            }
            let orchestrator = Orchestrator::builder()
                .graph(Graph::builder().build().map_err(|source| {
                    crate::graph_file::GraphFileError::Graph {
                        path: "(an empty graph)".into(),
                        source,
                    }
                })?)
                .bel(bel)
                .state_dir(home.dir())
                .build()?;
            orchestrator.taint(&wanted).await?;
        }
    }
    for r in &wanted {
        println!("tainted {r}: the next build that needs it rebuilds it");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cancel(
    home: &Home,
    graph: &Path,
    settings: &databuild_core::settings::Settings,
    id: &str,
) -> Result<ExitCode, CliError> {
    let op = ControlOp::Cancel {
        build_request_id: id.to_owned(),
    };
    match home.take_or_send(&op).await? {
        Reached::Answered(reply) => {
            if !reply.ok {
                // Say which of unknown, ended or refused it is.
                let state = super::load_state(home).await?;
                check_open(home, &state, id)?;
            }
            refused(home, reply)?;
            println!("cancelling build request {id}: its runs are being stopped");
            Ok(ExitCode::SUCCESS)
        }
        Reached::Held(bel) => {
            let bel: Arc<dyn BelSink> = Arc::new(bel);
            let state = super::state_of(&*bel).await?;
            check_open(home, &state, id)?;
            // Left open by a build that stopped: take it up and cancel it
            // (its runs are found, stopped, and the cancel recorded).
            let file = GraphFile::read(graph)?;
            let orchestrator = super::orchestrator(home, &file, settings, bel).await?;
            let mut resumed = orchestrator.resumed();
            match resumed.iter().position(|r| r.build_request_id() == id) {
                Some(at) => {
                    let target = resumed.swap_remove(at);
                    let _ = orchestrator.cancel(id, "cancelled from the command line");
                    match target.outcome().await {
                        Ok(o) if o.canceled => println!("build request {id} cancelled"),
                        Ok(o) if o.succeeded() => println!("build request {id} succeeded"),
                        Ok(_) => println!("build request {id} failed"),
                        Err(e) => println!("build request {id}: {e}"),
                    }
                }
                // It had begun to end: loading closed it.
                None => match orchestrator.state().request(id) {
                    Some(r) => println!(
                        "build request {id} {}",
                        format!("{:?}", r.state).to_ascii_lowercase()
                    ),
                    None => println!("build request {id} is gone"),
                },
            }
            // The others stay open for the next build to take up: this
            // command cancels, it does not build.
            for r in resumed {
                println!(
                    "build request {} stays open (left by a build that stopped): the next `databuild build` takes it up",
                    r.build_request_id()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_open(
    home: &Home,
    state: &databuild_core::state::BuildState,
    id: &str,
) -> Result<(), CliError> {
    match state.request(id) {
        None => Err(CliError::UnknownBuildRequest {
            id: id.to_owned(),
            home: home.dir().to_path_buf(),
        }),
        Some(r) if r.is_terminal() => Err(CliError::AlreadyEnded {
            id: id.to_owned(),
            state: format!("{:?}", r.state).to_ascii_lowercase(),
        }),
        Some(_) => Ok(()),
    }
}
