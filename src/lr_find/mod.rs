//! The LR range test (Smith, CLR §3.3): train from the run's initial weights while the
//! learning rate ramps from `start_lr` to `end_lr` (the `lr_range` schedule), record the loss
//! (or held-out accuracy) at every step, and suggest learning rates from the curve.
//!
//! Output folder: `lr_find.csv` (`step,lr,loss,smoothed_loss,centred_loss`), `accuracy.csv`
//! (`step,lr,accuracy`, with `--metric accuracy`) and `suggestion.json` (every rule, the one
//! used for `"auto"` values, the range and why the test stopped).
//!
//! [`hessian_free`]: the other way the papers find a learning rate, the super-convergence
//! paper's Hessian-free estimate along the first steps of a run (`lrlab hf-lr`).

pub mod hessian_free;
pub mod suggest;

use crate::config::{AutoRule, FindConfig, FindConvention, Metric, RunConfig};
use crate::train::setup::Setup;
use crate::train::step::Stepper;
use crate::util::{fmt_f64, short3, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use suggest::Suggestion;
use tch::{Kind, Tensor};

/// The recorded curve and what was read from it.
#[derive(Clone, Debug, Serialize)]
pub struct FindResult {
    /// Learning rate of each step.
    pub lr: Vec<f64>,
    /// Training loss of each step.
    pub loss: Vec<f64>,
    /// Bias-corrected moving average of the loss.
    pub smoothed: Vec<f64>,
    /// Centred moving average of the loss (no lag; what `clr_base`/`clr_max` read).
    pub centred: Vec<f64>,
    /// Half-width of the centred average ([`suggest::centred_half_width`]).
    pub centred_half: usize,
    /// Index of the blow-up ([`suggest::blowup`]), if the loss climbed back by a quarter of
    /// its fall.
    pub blowup: Option<usize>,
    /// The test ran to `end_lr` without a blow-up (loss) or with its best accuracy at the
    /// last evaluation: the range was too narrow to show where training breaks down.
    pub no_edge: bool,
    /// `(step, lr, accuracy)` with `metric = "accuracy"`.
    pub accuracy: Vec<(u64, f64, f64)>,
    /// Every rule's suggestion.
    pub suggestions: Vec<Suggestion>,
    /// Why the test ended before its last step, if it did.
    pub stopped: Option<String>,
    /// Wall-clock seconds of the test, its data loading and model building included.
    pub seconds: f64,
}

impl FindResult {
    /// The suggestion of `rule`, if the curve allowed it.
    pub fn get(&self, rule: &str) -> Option<&Suggestion> {
        self.suggestions.iter().find(|s| s.rule == rule)
    }

    /// Why the value `rule` suggests is doubtful, with what to do about it, if it is.
    pub fn doubt(&self, rule: &str, fc: &FindConfig) -> Option<String> {
        if self.no_edge {
            let last = self.lr.last().copied().unwrap_or(fc.end_lr);
            return Some(format!(
                "the range test found no edge: training had not broken down by the end of the \
                 range (lr {}), so `{rule}` reads the range, not the network; raise end_lr \
                 until the loss blows up",
                short3(last)
            ));
        }
        let s = self.get(rule)?;
        if s.past_blowup {
            return Some(format!(
                "`{rule}` = {} lies at or past the blow-up of the loss (at lr {}): its smoothed \
                 curve trails the raw loss; give the test more steps (at least 3/(1 - beta) = {}) \
                 or a smaller beta, or use rule \"clr_max\", which reads a centred average",
                short3(s.lr),
                self.blowup.map_or("?".into(), |i| short3(self.lr[i])),
                (3.0 / (1.0 - fc.beta)).ceil()
            ));
        }
        if s.at_range_end {
            return Some(format!(
                "`{rule}` = {} is at the end of what the rule can read: the test found no edge \
                 for it; raise end_lr (now {})",
                short3(s.lr),
                short3(fc.end_lr)
            ));
        }
        None
    }
}

/// Run the range test for `cfg` (its data, model, optimizer and seed; its schedule is
/// replaced by the ramp). The model is built from the run's seed, so its initial weights are
/// those a training of `cfg` starts from.
pub fn range_test(cfg: &RunConfig, fc: &FindConfig, progress: bool) -> Result<FindResult> {
    let start = std::time::Instant::now();
    fc.validate()?;
    // Before the data loads: Ctrl-C from here on stops the test cleanly.
    crate::train::stop::flag()?;
    if fc.metric == Metric::Accuracy && cfg.data.val_split == 0 {
        crate::util::warn_once(
            "warning: lr_find.metric = \"accuracy\" with data.val_split = 0 reads accuracy on the \
             test set, which the run is then reported on; set data.val_split to choose the \
             learning rate on held-out training images",
        );
    }
    let ramp = ramp_config(cfg, fc);
    let setup = Setup::with_length(&ramp, |k| steps_of(fc, k))?;
    fc.check_steps(setup.total_steps)?;
    let memory = 3.0 / (1.0 - fc.beta);
    if fc.metric == Metric::Loss
        && fc.rule != AutoRule::ClrMax
        && (setup.total_steps as f64) < memory
    {
        crate::util::warn_once(&format!(
            "warning: the range test has {} steps, under 3/(1 - beta) = {memory:.0} for beta = {}: \
             its smoothed loss remembers about {:.0} steps and trails the raw loss, so `steepest`, \
             `valley` and `minimum_div10` may read it late (clr_base/clr_max read a centred average \
             and do not lag); give it more steps or a smaller beta",
            setup.total_steps,
            fc.beta,
            fc.beta / (1.0 - fc.beta)
        ));
    }
    let mut stepper = Stepper::new(&ramp, &setup, None)?;
    let mut r = run_ramp(&ramp, fc, &setup, &mut stepper, progress)?;
    r.seconds = start.elapsed().as_secs_f64();
    Ok(r)
}

fn steps_of(fc: &FindConfig, steps_per_epoch: u64) -> u64 {
    if fc.steps > 0 {
        fc.steps
    } else {
        ((fc.epochs * steps_per_epoch as f64).round() as u64).max(2)
    }
}

/// `cfg` with its schedule replaced by the `lr_range` ramp of `fc`.
fn ramp_config(cfg: &RunConfig, fc: &FindConfig) -> RunConfig {
    let mut ramp = cfg.clone();
    let mut t = toml::Table::new();
    t.insert("kind".into(), "lr_range".into());
    t.insert("start_lr".into(), fc.start_lr.into());
    t.insert("end_lr".into(), fc.end_lr.into());
    t.insert("mode".into(), fc.mode.name().into());
    if fc.convention == FindConvention::Fastai {
        t.insert("convention".into(), "fastai".into());
    }
    ramp.schedule = t;
    ramp
}

/// Train along the ramp with the run's own step, then put the weights back as they were
/// (the optimizer's state is spent: build a new [`Stepper`] to train from them).
pub fn run_ramp(
    cfg: &RunConfig,
    fc: &FindConfig,
    setup: &Setup,
    stepper: &mut Stepper,
    progress: bool,
) -> Result<FindResult> {
    let initial: Vec<(String, Tensor)> = stepper
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect();
    let total = setup.total_steps;
    let bar = crate::train::setup::progress_bar(progress, total, 0);
    let mut lrs = Vec::new();
    let mut losses = Vec::new();
    let mut accuracy = Vec::new();
    let mut stopped = None;
    let mut avg = 0.0;
    let mut best = f64::INFINITY;
    // fastai goes on past a NaN (its comparisons with NaN are false) to num_it, and its rules
    // cut the curve at the first NaN; an infinite loss still trips the stop factor.
    let fastai = fc.convention == FindConvention::Fastai;
    let mut step = 0u64;
    for batch in setup.data.train.endless().take(total as usize) {
        crate::train::stop::check(bar.as_ref())?;
        let batch = batch?;
        let lr = setup.schedule.lr(step);
        let momentum = setup.schedule.momentum_or(step, cfg.optim.momentum);
        // The run's own step: clipping, bf16 autocast and dropout seeding as in training.
        let (loss, _) = stepper.step(&batch, step, lr, momentum)?;
        let l = f64::try_from(&loss).context("reading the loss")?;
        lrs.push(lr);
        losses.push(l);
        step += 1;
        if let Some(b) = &bar {
            b.set_position(step);
            b.set_message(format!("lr {lr:.2e} loss {l:.4}"));
        }
        if fc.metric == Metric::Accuracy && (step % fc.eval_every == 0 || step == total) {
            accuracy.push((
                step - 1,
                lr,
                held_out_accuracy(cfg, stepper, setup, fc.eval_batches, step)?,
            ));
        }
        avg = fc.beta * avg + (1.0 - fc.beta) * l;
        let smoothed = avg / (1.0 - fc.beta.powi(losses.len() as i32));
        if l.is_nan() && fastai {
            stopped.get_or_insert_with(|| {
                format!(
                    "loss became NaN at step {} (lr {lr:e}); went on to num_it as fastai does",
                    step - 1
                )
            });
            continue;
        }
        if (!l.is_finite() || !smoothed.is_finite()) && !fastai {
            stopped = Some(format!(
                "loss became non-finite at step {} (lr {lr:e})",
                step - 1
            ));
            break;
        }
        best = best.min(smoothed);
        if fc.metric == Metric::Loss && fc.stop_factor > 0.0 && smoothed > fc.stop_factor * best {
            stopped = Some(format!(
                    "smoothed loss {smoothed:.4} exceeded {} x its best {best:.4} at step {} (lr {lr:e})",
                    fc.stop_factor,
                    step - 1
                ));
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Put the initial weights back: a training that follows starts where it would have.
    crate::models::restore_vars(&stepper.vs, &initial);
    let smoothed = suggest::smooth(&losses, fc.beta);
    let mut suggestions = Vec::new();
    suggestions.extend(suggest::steepest(
        &lrs,
        &smoothed,
        fc.skip_start,
        fc.skip_end,
    ));
    // fastai's rules read the curve as its lr_find hands it to them (trimmed by the number
    // of steps asked for).
    let num_it = total as usize;
    suggestions.extend(suggest::valley(&lrs, &smoothed, num_it));
    suggestions.extend(suggest::minimum_div10(&lrs, &smoothed, num_it));
    let half = suggest::centred_half_width(fc.beta, num_it);
    let centred = suggest::centred(&losses, half);
    let skip = fc.skip_start.min(lrs.len() / 4);
    if fc.metric == Metric::Accuracy {
        let lr: Vec<f64> = accuracy.iter().map(|a| a.1).collect();
        let acc: Vec<f64> = accuracy.iter().map(|a| a.2).collect();
        suggestions.extend(suggest::accuracy_bounds(&lr, &acc));
    } else {
        suggestions.extend(suggest::clr_bounds(&lrs, &centred, skip, half));
    }
    let blowup = suggest::blowup(&centred, skip);
    let ran_to_end = stopped.is_none();
    for s in &mut suggestions {
        // A test stopped by divergence found its edge; only a full ramp can end short of it.
        s.at_range_end &= ran_to_end;
        // Accuracy points index the evaluations, not the steps.
        if fc.metric == Metric::Loss || !s.rule.starts_with("clr_") {
            // By value: minimum_div10 reads a late point but suggests a tenth of it.
            s.past_blowup = blowup.is_some_and(|b| s.lr >= lrs[b]);
        }
    }
    let no_edge = ran_to_end
        && match fc.metric {
            // The loss never climbed back: still falling, or flat, at end_lr.
            Metric::Loss => blowup.is_none(),
            Metric::Accuracy => {
                accuracy.len() >= 2 && {
                    let best = accuracy
                        .iter()
                        .map(|a| a.2)
                        .fold(f64::NEG_INFINITY, f64::max);
                    accuracy.last().is_some_and(|a| a.2 >= best)
                }
            }
        };
    Ok(FindResult {
        lr: lrs,
        loss: losses,
        smoothed,
        centred,
        centred_half: half,
        blowup,
        no_edge,
        accuracy,
        suggestions,
        stopped,
        seconds: 0.0,
    })
}

/// Accuracy on the first `batches` evaluation batches (0: all) after `step` optimizer steps,
/// read as the run's evaluation reads it: with Caffe's bias-corrected batch-norm statistics
/// under `model.bn_stats = "caffe"` (put back afterwards) and in bf16 where the run is.
fn held_out_accuracy(
    cfg: &RunConfig,
    stepper: &Stepper,
    setup: &Setup,
    batches: usize,
    step: u64,
) -> Result<f64> {
    let saved = crate::models::eval_bn_stats(&stepper.vs, &cfg.model, step);
    let acc = held_out_sums(&stepper.model, setup, batches);
    crate::models::restore_vars(&stepper.vs, &saved);
    acc
}

fn held_out_sums(model: &crate::models::Model, setup: &Setup, batches: usize) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let limit = if batches == 0 { usize::MAX } else { batches };
    let mut correct = 0.0;
    let mut seen = 0.0;
    for batch in setup.data.eval.epoch(0, 0).take(limit) {
        let batch = batch?;
        let logits = tch::autocast(setup.bf16, || model.net.forward_t(&batch.images, false));
        correct += f64::try_from(
            logits
                .argmax(1, false)
                .eq_tensor(&batch.labels)
                .sum(Kind::Double),
        )?;
        seen += batch.labels.size()[0] as f64;
    }
    Ok(if seen > 0.0 { correct / seen } else { 0.0 })
}

/// Schedule keys whose value may be `"auto"` (chosen by a range test before training).
pub const AUTO_KEYS: [&str; 3] = ["max_lr", "lr_max", "base_lr"];

/// The top-level schedule keys set to `"auto"`.
pub fn auto_keys(schedule: &toml::Table) -> Vec<String> {
    AUTO_KEYS
        .iter()
        .filter(|k| schedule.get(**k).and_then(|v| v.as_str()) == Some("auto"))
        .map(|k| k.to_string())
        .collect()
}

/// `suggestion.json` of a range-test folder.
pub const SUGGESTION: &str = "suggestion.json";
/// The range test of a run with `"auto"` values, inside its run folder.
pub const RUN_RANGE_TEST: &str = "lr_find";

/// The range of a test, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RangeRecord {
    /// First learning rate.
    pub start_lr: f64,
    /// Last learning rate.
    pub end_lr: f64,
    /// `exp` or `linear`.
    pub mode: String,
    /// Steps trained.
    pub steps_run: usize,
}

/// `suggestion.json`: what a range test found. Written by [`write`]; read back through
/// [`SuggestionFile::read`] by the run that resolves `"auto"` values, the report and the
/// sweep summary (the one reader). Every field has a default, so that files written by
/// earlier lrlab, or by hand, still read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SuggestionFile {
    /// The ramp.
    pub range: RangeRecord,
    /// What was watched.
    pub metric: Option<Metric>,
    /// β of the smoothed loss.
    pub smoothing_beta: f64,
    /// The stop factor.
    pub stop_factor: f64,
    /// Why the test ended before its last step, if it did.
    pub stopped: Option<String>,
    /// Wall-clock seconds of the test.
    pub seconds: Option<f64>,
    /// The range showed no edge ([`FindResult::no_edge`]).
    pub no_edge: bool,
    /// LR of the blow-up, if the loss climbed back.
    pub blowup_lr: Option<f64>,
    /// Half-width of the centred average.
    pub centred_half_width: usize,
    /// The rule whose value replaces `"auto"`.
    pub rule_for_auto: Option<String>,
    /// Every rule's suggestion.
    pub suggestions: Vec<Suggestion>,
    /// The values that replaced `"auto"` in a run config (`{"max_lr": 0.3}`).
    pub chosen: Option<serde_json::Value>,
}

impl SuggestionFile {
    /// `dir/suggestion.json`; `None` when there is none, an input error naming the file when
    /// it is not one.
    pub fn read(dir: &Path) -> Result<Option<SuggestionFile>> {
        let path = dir.join(SUGGESTION);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            crate::error::input_error(format!(
                "{}: not a range test's suggestion file: {e}",
                path.display()
            ))
        })
    }
}

/// The values a range test chose, as kept in `out/lr_find/suggestion.json`, when it holds
/// every key of `keys`.
fn saved_choice(out: &Path, keys: &[String]) -> Option<serde_json::Value> {
    let c = SuggestionFile::read(&out.join(RUN_RANGE_TEST))
        .ok()??
        .chosen?;
    keys.iter()
        .all(|k| c.get(k).and_then(|x| x.as_f64()).is_some())
        .then_some(c)
}

/// For a rank other than 0 of a multi-process run with `"auto"` values: wait, before joining
/// the group, until rank 0's range test has kept its choice in `out/lr_find/` (it runs before
/// rank 0 joins, so no collective timeout bounds it). A launcher ends this rank if rank 0
/// fails; a signal ends the wait ([`crate::train::stop::Interrupted`], exit 3). A line every
/// minute says what it waits for.
pub fn wait_for_choice(cfg: &RunConfig, out: &Path, rank: usize) -> Result<()> {
    let keys = auto_keys(&cfg.schedule);
    if keys.is_empty() {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let mut said = 0;
    while saved_choice(out, &keys).is_none() {
        crate::train::stop::check(None)?;
        let minutes = start.elapsed().as_secs() / 60;
        if minutes > said {
            said = minutes;
            eprintln!(
                "rank {rank}: waiting for rank 0's range test ({minutes} min) to choose {} in {}",
                keys.join(", "),
                out.join(RUN_RANGE_TEST).display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

/// Replace `"auto"` schedule values by the range test's suggestions. The test runs once and
/// is kept in `out/lr_find/`; a resumed run reads the values chosen then. Returns the
/// resolved config and the chosen values (`{"max_lr": 0.3, ...}`), or `None` when no value
/// is `"auto"`.
pub fn resolve_auto(
    cfg: &RunConfig,
    out: &Path,
    progress: bool,
) -> Result<Option<(RunConfig, serde_json::Value)>> {
    let keys = auto_keys(&cfg.schedule);
    if keys.is_empty() {
        return Ok(None);
    }
    cfg.lr_find.validate()?;
    // Check the rest of the schedule before spending time on the test.
    let mut probe = cfg.clone();
    for k in &keys {
        let v = if k == "base_lr" { 1e-12 } else { 1.0 };
        probe.schedule.insert(k.clone(), toml::Value::Float(v));
    }
    Setup::new(&probe)?;
    let dir = out.join(RUN_RANGE_TEST);
    let chosen = match saved_choice(out, &keys) {
        Some(c) => c,
        None => {
            let r = range_test(cfg, &cfg.lr_find, progress)?;
            let max = r
                .get(cfg.lr_find.rule.name())
                .map(|s| s.lr)
                .with_context(|| {
                    format!(
                        "the range test gave no `{}` suggestion (too few points?)",
                        cfg.lr_find.rule
                    )
                })?;
            let mut rules = vec![cfg.lr_find.rule.name()];
            if keys.iter().any(|k| k == "base_lr") && r.get("clr_base").is_some() {
                rules.push("clr_base");
            }
            if !cfg.lr_find.allow_edge {
                if let Some(why) = rules.iter().find_map(|rule| r.doubt(rule, &cfg.lr_find)) {
                    crate::bail_input!(
                        "{why}. Nothing was trained or written; set lr_find.allow_edge = true \
                         to train at this value anyway"
                    );
                }
            }
            let mut c = serde_json::Map::new();
            for k in &keys {
                let v = if k == "base_lr" {
                    // Smith: base where the loss starts to fall; else a quarter of the max.
                    r.get("clr_base")
                        .map(|s| s.lr)
                        .filter(|&b| b < max)
                        .unwrap_or(max / 4.0)
                } else {
                    max
                };
                c.insert(k.clone(), serde_json::json!(v));
            }
            let c = serde_json::Value::Object(c);
            write(&dir, &cfg.lr_find, &r, Some(&c))?;
            c
        }
    };
    let mut resolved = cfg.clone();
    let mut said = Vec::new();
    for k in &keys {
        let v = chosen[k].as_f64().expect("checked above");
        resolved.schedule.insert(k.clone(), toml::Value::Float(v));
        let rule = if k == "base_lr" {
            "clr_base"
        } else {
            cfg.lr_find.rule.name()
        };
        said.push(format!("schedule.{k} = {} (rule {rule})", fmt_f64(v)));
    }
    if progress {
        eprintln!(
            "range test: {}; curve and suggestions in {}",
            said.join(", "),
            dir.display()
        );
    }
    Ok(Some((resolved, chosen)))
}

/// Write `lr_find.csv`, `accuracy.csv` (accuracy metric) and `suggestion.json` into `out`;
/// `chosen` records the values that replaced `"auto"` in a run config.
pub fn write(
    out: &Path,
    fc: &FindConfig,
    r: &FindResult,
    chosen: Option<&serde_json::Value>,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut csv = String::from("step,lr,loss,smoothed_loss,centred_loss\n");
    for i in 0..r.lr.len() {
        csv.push_str(&format!(
            "{i},{},{},{},{}\n",
            fmt_f64(r.lr[i]),
            fmt_f64(r.loss[i]),
            fmt_f64(r.smoothed[i]),
            fmt_f64(r.centred[i])
        ));
    }
    write_atomic(&out.join("lr_find.csv"), csv.as_bytes())?;
    if fc.metric == Metric::Accuracy {
        let mut csv = String::from("step,lr,accuracy\n");
        for (s, lr, a) in &r.accuracy {
            csv.push_str(&format!("{s},{},{}\n", fmt_f64(*lr), fmt_f64(*a)));
        }
        write_atomic(&out.join("accuracy.csv"), csv.as_bytes())?;
    } else if out.join("accuracy.csv").exists() {
        // A stale curve from an earlier accuracy test would be drawn with this one.
        std::fs::remove_file(out.join("accuracy.csv"))
            .with_context(|| format!("cannot remove the stale {}/accuracy.csv", out.display()))?;
    }
    let doc = SuggestionFile {
        range: RangeRecord {
            start_lr: fc.start_lr,
            end_lr: fc.end_lr,
            mode: fc.mode.name().to_string(),
            steps_run: r.lr.len(),
        },
        metric: Some(fc.metric),
        smoothing_beta: fc.beta,
        stop_factor: fc.stop_factor,
        stopped: r.stopped.clone(),
        seconds: Some(r.seconds),
        no_edge: r.no_edge,
        blowup_lr: r.blowup.map(|i| r.lr[i]),
        centred_half_width: r.centred_half,
        rule_for_auto: Some(fc.rule.name().to_string()),
        suggestions: r.suggestions.clone(),
        chosen: chosen.cloned(),
    };
    write_atomic(
        &out.join(SUGGESTION),
        format!("{}\n", serde_json::to_string_pretty(&doc)?).as_bytes(),
    )
}
