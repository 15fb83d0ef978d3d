//! `--wait` and `task watch`: follow a task to its end with a live progress bar (its
//! step and percentage, its history events above the bar) on a terminal, or one line
//! per change when stderr is not one.

use herd_client::types::{TaskDto, TaskStatus};
use herd_client::{Client, Progress, WaitOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};
use uuid::Uuid;

use super::output::Out;
use super::{Failure, out_event_line};

/// Waits for `task`; Ok with its final state when it succeeded, else the failure.
pub async fn follow(
    api: &Client,
    task: Uuid,
    what: &str,
    out: &Out,
    timeout: Option<Duration>,
) -> anyhow::Result<TaskDto> {
    let started = Instant::now();
    let bar = out.interactive.then(|| {
        let b = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos:>3}% {msg} ({elapsed})")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_prefix(what.to_owned());
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut last_line = String::new();
    let opts = WaitOptions { timeout, ..Default::default() };
    let result = api
        .wait_for_task(task, opts, |p| match p {
            Progress::Task(t) => {
                let step = t.step.clone().unwrap_or_default();
                match &bar {
                    Some(b) => {
                        b.set_position(t.progress.clamp(0, 100) as u64);
                        b.set_message(step);
                    }
                    None => {
                        let line = match &t.step {
                            Some(step) => format!("{what}: {} {step} {}%", t.status, t.progress),
                            None => format!("{what}: {} {}%", t.status, t.progress),
                        };
                        if line != last_line {
                            eprintln!("{line}");
                            last_line = line;
                        }
                    }
                }
            }
            Progress::Event(e) => {
                let line = out_event_line(out, e);
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
        })
        .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let t = match result {
        Ok(t) => t,
        Err(herd_client::Error::Timeout(d)) => {
            return Err(Failure::Timeout(format!(
                "{what}: still running after {}s; follow it with `herd task watch {task}`",
                d.as_secs()
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let secs = started.elapsed().as_secs_f64();
    match t.status {
        TaskStatus::Succeeded => {
            eprintln!("{what}: {} in {secs:.1}s", out_state_err(out, "succeeded"));
            Ok(t)
        }
        status => {
            let (code, message) = t.error.as_ref().map_or_else(
                || (status.to_string(), format!("the task was {status}")),
                |e| (e.code.clone(), e.message.clone()),
            );
            Err(Failure::Task { what: what.to_owned(), code, message }.into())
        }
    }
}

fn out_state_err(out: &Out, s: &str) -> String {
    if out.interactive { format!("\x1b[32m{s}\x1b[0m") } else { s.to_owned() }
}
