//! The families at known points: the papers' formulas and the reference libraries' values
//! (PyTorch 2.13, timm, fastai 2.8) quoted in the project's reference notes.

use super::*;
use std::f64::consts::PI;

// ---- SGDR -----------------------------------------------------------------------------------

#[test]
fn sgdr_paper_restarts_at_epochs_10_30_70_150() {
    // Loshchilov & Hutter: T_0 = 10, T_mult = 2, 200 epochs; 7 steps per epoch.
    let s = sched("kind = 'sgdr'\nlr_max = 0.05\nt_0 = 10\nt_mult = 2", 200, 7);
    assert_eq!(s.lr(0), 0.05);
    for epoch in [10, 30, 70, 150] {
        assert_eq!(s.lr(epoch * 7), 0.05, "restart at epoch {epoch}");
    }
    assert_eq!(s.cycle_ends(), vec![70, 210, 490, 1050]);
    // The last step of each cycle: T_cur = T_i - 1/7 epochs, one step short of lr_min.
    for (start, len) in [(0u64, 10u64), (10, 20), (30, 40), (70, 80)] {
        let k = (start + len) * 7 - 1;
        let t_i = len as f64;
        let want = 0.05 * (1.0 + (PI * (t_i - 1.0 / 7.0) / t_i).cos()) / 2.0;
        assert_close(s.lr(k), want, 1e-12);
        assert!(s.lr(k) > 0.0 && s.lr(k) < 1e-3);
    }
    // T_cur advances every step (fractional epochs): halfway through the 20-epoch cycle.
    assert_close(s.lr(20 * 7), 0.025, 1e-12);
    assert_close(
        s.lr(20 * 7 + 3),
        0.025 * (1.0 + (PI * (10.0 + 3.0 / 7.0) / 20.0).cos()),
        1e-12,
    );
}

#[test]
fn sgdr_float_log_case_restarts_at_epoch_121() {
    // PyTorch and timm compute floor(log_3(243)) = 4 and give lr_min at epoch 121.
    let s = sched("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 1\nt_mult = 3", 130, 1);
    assert_eq!(s.cycle_ends(), vec![1, 4, 13, 40, 121]);
    assert_eq!(s.lr(121), 0.1);
    assert_close(s.lr(120), 0.05 * (1.0 + (PI * 80.0 / 81.0).cos()), 1e-12);
    assert!(s.lr(120) < 1e-4);
    let s = sched("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 1\nt_mult = 3", 130, 5);
    assert_eq!(s.lr(605), 0.1);
    assert!(s.lr(604) < 1e-4);
    // Same for T_mult = 10 at epoch 111.
    let s = sched("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 1\nt_mult = 10", 120, 1);
    assert_eq!(s.cycle_ends(), vec![1, 11, 111]);
    assert_eq!(s.lr(111), 0.1);
}

#[test]
fn sgdr_equals_pytorch_implicit_stepping_values() {
    // torch CosineAnnealingWarmRestarts(0.1, T_0 3, T_mult 2), t 0..9 (reference notes §6).
    let s = sched("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 3\nt_mult = 2", 10, 1);
    let want = [
        (0, 0.1),
        (1, 0.07500000000000001),
        (2, 0.025000000000000012),
        (3, 0.1),
        (4, 0.09330127018922195),
        (6, 0.05),
        (8, 0.006698729810778065),
        (9, 0.1),
    ];
    for (k, v) in want {
        assert_close(s.lr(k), v, 1e-12);
    }
    // Fractional stepping, T_0 2, epochs 0, .25, ...: 0.1, 0.0962, 0.0854, 0.0691, 0.05, ..., 0.1 at 2.
    let s = sched("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 2", 3, 4);
    let got: Vec<f64> = lrs(&s, 0..5)
        .iter()
        .map(|v| (v * 1e4).round() / 1e4)
        .collect();
    assert_eq!(got, vec![0.1, 0.0962, 0.0854, 0.0691, 0.05]);
    assert_eq!(s.lr(8), 0.1);
}

#[test]
fn sgdr_timm_decay_and_cycle_limit() {
    // timm CosineLRScheduler(0.1, t_initial 4, cycle_mul 2, cycle_decay .5, cycle_limit 3,
    // lr_min 1e-3): 0.1, 0.0855017856687341, 0.0505, 0.0154982143312659, 0.05, ...,
    // 0.025 at 12, 0.001 from 28.
    let s = sched(
        "kind = 'sgdr'\nlr_max = 0.1\nlr_min = 1e-3\nt_0 = 4\nt_mult = 2\nrestart_decay = 0.5\ncycle_limit = 3",
        40,
        1,
    );
    assert_all_close(
        &lrs(&s, 0..5),
        &[0.1, 0.0855017856687341, 0.0505, 0.0154982143312659, 0.05],
        1e-12,
    );
    assert_eq!(s.lr(12), 0.025);
    assert!((28..40).all(|k| s.lr(k) == 1e-3));
    assert!(s.lr(27) > 1e-3);
    assert_eq!(s.cycle_ends(), vec![4, 12, 28]);
}

#[test]
fn sgdr_fractional_lengths_and_multipliers() {
    // t_mult 1.5: cycles of 2, 3, 4.5, 6.75 epochs start at 0, 2, 5, 9.5, 16.25.
    let s = sched("kind = 'sgdr'\nlr_max = 1\nt_0 = 2\nt_mult = 1.5", 20, 4);
    assert_eq!(s.cycle_ends(), vec![8, 20, 38, 65]);
    for k in [0, 8, 20, 38, 65] {
        assert_eq!(s.lr(k), 1.0);
    }
    assert_close(s.lr(39), 0.5 * (1.0 + (PI * 0.25 / 6.75).cos()), 1e-12);
    // t_0 half an epoch of 3 steps: boundaries at 1.5, 3, 4.5, 6 steps.
    let s = sched("kind = 'sgdr'\nlr_max = 1\nt_0 = 0.5", 2, 3);
    assert_eq!(s.cycle_ends(), vec![2, 3, 5, 6]);
    assert_close(
        s.lr(2),
        0.5 * (1.0 + (PI * (2.0 / 3.0 - 0.5) / 0.5).cos()),
        1e-12,
    );
}

#[test]
fn sgdr_is_a_pure_function_of_the_step() {
    // Resume = evaluate: a schedule built for a short run agrees with one built for a long run,
    // also far past its own cached cycles, in any evaluation order.
    let spec = "kind = 'sgdr'\nlr_max = 0.1\nlr_min = 0.001\nt_0 = 1\nt_mult = 1.5";
    let short = sched(spec, 10, 13);
    let long = sched(spec, 3000, 13);
    for k in (0..39_000).rev().step_by(7) {
        assert_eq!(short.lr(k), long.lr(k), "step {k}");
    }
    let t1 = sched("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 3", 5, 7);
    let t2 = sched("kind = 'sgdr'\nlr_max = 0.1\nt_0 = 3", 500, 7);
    for k in [0, 20, 21, 22, 3000, 3149, 3150] {
        assert_eq!(t1.lr(k), t2.lr(k), "step {k}");
    }
}

// ---- cosine, step, exponential, polynomial, linear ----------------------------------------------

#[test]
fn cosine_equals_pytorch_cosine_annealing() {
    // torch CosineAnnealingLR(0.1, T_max 10, eta_min 1e-3), t 0..5 and 10.
    let s = sched("kind = 'cosine'\nlr_max = 0.1\nlr_min = 1e-3", 10, 1);
    assert_all_close(
        &lrs(&s, 0..6),
        &[
            0.1,
            0.09757729755661011,
            0.0905463412215599,
            0.07959536998847742,
            0.0657963412215599,
            0.0505,
        ],
        1e-13,
    );
    // Past the run lr_min is held (PyTorch's recursion would rise again).
    assert_eq!(s.lr(10), 1e-3);
    assert_eq!(s.lr(15), 1e-3);
}

#[test]
fn step_is_multistep_with_a_multiset_of_milestones() {
    let s = sched("kind = 'step'\nlr = 0.1\nmilestones = [2, 2, 5]", 7, 3);
    assert_eq!(s.lr(5), 0.1);
    assert_close(s.lr(6), 0.001, 1e-15);
    assert_close(s.lr(14), 0.001, 1e-15);
    assert_close(s.lr(15), 1e-4, 1e-15);
    // The SGDR baseline: 0.1, x0.2 at epochs 60, 120, 160.
    let s = sched(
        "kind = 'step'\nlr = 0.1\nmilestones = [60, 120, 160]\ngamma = 0.2",
        200,
        10,
    );
    assert_eq!(s.lr(599), 0.1);
    assert_close(s.lr(600), 0.02, 1e-15);
    assert_close(s.lr(1200), 0.004, 1e-15);
    assert_close(s.lr(1600), 0.0008, 1e-15);
    // A fractional milestone acts at the first step whose epoch reaches it.
    let s = sched(
        "kind = 'step'\nlr = 1\nmilestones = [0.5]\ngamma = 0.5",
        2,
        4,
    );
    assert_eq!(lrs(&s, 0..4), vec![1.0, 1.0, 0.5, 0.5]);
    assert_eq!(s.momentum(0), None);
}

#[test]
fn inverse_time_is_caffes_inv_policy() {
    // Caffe's LeNet solver: base_lr 0.01, lr_policy "inv", gamma 1e-4, power 0.75.
    let s = sched(
        "kind = 'inverse_time'\nlr = 0.01\ndecay_rate = 1e-4\npower = 0.75\ndecay_steps = 1",
        10,
        1000,
    );
    for k in [0u64, 1, 500, 9999] {
        assert_close(s.lr(k), 0.01 * (1.0 + 1e-4 * k as f64).powf(-0.75), 1e-12);
    }
    // Keras' staircase, interval of an epoch by default: constant within an epoch.
    let s = sched(
        "kind = 'inverse_time'\nlr = 0.1\ndecay_rate = 1\nstaircase = true",
        5,
        4,
    );
    assert_eq!((s.lr(3), s.lr(4), s.lr(11)), (0.1, 0.05, 0.1 / 3.0));
}

#[test]
fn step_values_and_cosine_t_max() {
    let s = sched(
        "kind = 'step'\nmilestone_steps = [3, 7]\nvalues = [0.3, 0.2, 0.05]",
        2,
        5,
    );
    let lrs: Vec<f64> = (0..10).map(|k| s.lr(k)).collect();
    assert_eq!(lrs, [0.3, 0.3, 0.3, 0.2, 0.2, 0.2, 0.2, 0.05, 0.05, 0.05]);
    // Cosine over 2 of 4 epochs: lr_min held after, or PyTorch's rise back to lr_max at 4.
    let hold = sched(
        "kind = 'cosine'\nlr_max = 0.1\nlr_min = 0.01\nt_max = 2",
        4,
        5,
    );
    let rise = sched(
        "kind = 'cosine'\nlr_max = 0.1\nlr_min = 0.01\nt_max = 2\nconvention = 'pytorch'",
        4,
        5,
    );
    for k in 0..=10 {
        assert_eq!(hold.lr(k), rise.lr(k), "step {k}");
    }
    assert_eq!(hold.lr(15), 0.01);
    assert_close(
        rise.lr(15),
        0.01 + 0.09 * (1.0 + (PI * 15.0 / 10.0).cos()) / 2.0,
        1e-12,
    );
    assert_close(rise.lr(20), 0.1, 1e-12);
}

#[test]
fn exponential_per_epoch() {
    let s = sched("kind = 'exponential'\nlr = 0.1\ngamma = 0.5", 4, 4);
    assert_eq!(lrs(&s, 0..5), vec![0.1, 0.1, 0.1, 0.1, 0.05]);
    assert_eq!(s.lr(12), 0.0125);
    let s = sched(
        "kind = 'exponential'\nlr = 0.1\ngamma = 0.5\nstaircase = false",
        4,
        4,
    );
    assert_close(s.lr(2), 0.1 * 0.5f64.sqrt(), 1e-15);
}

#[test]
fn polynomial_and_linear_equal_pytorch_values() {
    // torch PolynomialLR(total_iters 4, power 2), b 0.1: 0.1, 0.05625, 0.025, 0.00625, 0, 0.
    let s = sched("kind = 'polynomial'\nlr = 0.1\npower = 2", 4, 1);
    assert_all_close(
        &lrs(&s, 0..6),
        &[0.1, 0.05625, 0.025, 0.00625, 0.0, 0.0],
        1e-15,
    );
    let s = sched("kind = 'polynomial'\nlr = 0.1\nend_lr = 0.01", 10, 1);
    assert_close(s.lr(5), 0.055, 1e-15);
    assert_eq!(s.lr(10), 0.01);
    // torch LinearLR(0.25 -> 1 over 4), b 0.1: 0.025, 0.04375, 0.0625, 0.08125, 0.1.
    let s = sched("kind = 'linear'\nstart_lr = 0.025\nend_lr = 0.1", 4, 1);
    assert_all_close(
        &lrs(&s, 0..6),
        &[0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1],
        1e-15,
    );
}

// ---- CLR ------------------------------------------------------------------------------------

#[test]
fn clr_triangular2_halves_the_peak_each_cycle() {
    let s = sched(
        "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\nmode = 'triangular2'",
        4,
        10,
    );
    assert_all_close(&lrs(&s, 0..5), &[0.01, 0.0325, 0.055, 0.0775, 0.1], 1e-14);
    assert_close(s.lr(8), 0.01, 1e-14);
    assert_close(s.lr(9), 0.02125, 1e-14);
    for (k, peak) in [
        (4, 0.1),
        (12, 0.055),
        (20, 0.0325),
        (28, 0.02125),
        (36, 0.015625),
    ] {
        assert_close(s.lr(k), peak, 1e-14);
    }
    // Momentum moves opposite: 0.9 -> 0.8 -> 0.9, amplitude halved with the LR.
    for (k, m) in [(0, 0.9), (4, 0.8), (8, 0.9), (12, 0.85), (20, 0.875)] {
        assert_close(s.momentum(k).unwrap(), m, 1e-14);
    }
    assert_eq!(s.cycle_ends(), vec![8, 16, 24, 32, 40]);
}

#[test]
fn clr_from_zero_is_the_authors_range_test() {
    // Caffe `triangular`, base_lr 0, stepsize = max_iter (super-convergence's range tests):
    // the LR rises linearly from 0 to max_lr over the run, as torch's CyclicLR(0, max) does.
    let s = sched(
        "kind = 'clr'\nbase_lr = 0\nmax_lr = 3.0\nstep_size = 100",
        1,
        100,
    );
    for k in 0..100u64 {
        assert_close(s.lr(k), 3.0 * k as f64 / 100.0, 1e-15);
    }
    // exp_range from 0 scales the whole LR.
    let s = sched(
        "kind = 'clr'\nbase_lr = 0\nmax_lr = 1\nstep_size = 4\nmode = 'exp_range'\ngamma = 0.5",
        1,
        8,
    );
    assert_close(s.lr(4), 0.5f64.powi(4), 1e-15);
}

#[test]
fn clr_matches_smiths_formula_and_pytorch_values() {
    // Smith's eq.: cycle = floor(1 + it / (2 ss)), x = |it/ss - 2 cycle + 1|.
    let s = sched(
        "kind = 'clr'\nbase_lr = 0.001\nmax_lr = 0.006\nstep_size = 7",
        10,
        10,
    );
    for it in 0..100u64 {
        let ss = 7.0;
        let cycle = (1.0 + it as f64 / (2.0 * ss)).floor();
        let x = (it as f64 / ss - 2.0 * cycle + 1.0).abs();
        let want = 0.001 + (0.006 - 0.001) * (1.0 - x).max(0.0);
        assert_close(s.lr(it), want, 1e-12);
    }
    // Asymmetric (up 3, down 2): 0, 1/3, 2/3, 1, 1/2, 0 of the amplitude.
    let s = sched(
        "kind = 'clr'\nbase_lr = 1\nmax_lr = 2\nstep_size = 3\nstep_size_down = 2",
        4,
        5,
    );
    assert_all_close(
        &lrs(&s, 0..6),
        &[1.0, 4.0 / 3.0, 5.0 / 3.0, 2.0, 1.5, 1.0],
        1e-15,
    );
    // torch CyclicLR exp_range(0.01, 0.1, up 3, down 5, gamma 0.9), printed to 5-6 digits.
    let s = sched(
        "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 3\nstep_size_down = 5\nmode = 'exp_range'\ngamma = 0.9",
        1,
        10,
    );
    assert_all_close(
        &lrs(&s, 0..10),
        &[
            0.01, 0.037, 0.0586, 0.07561, 0.057239, 0.041886, 0.029132, 0.018609, 0.01, 0.021623,
        ],
        2e-5,
    );
    let s = sched(
        "kind = 'clr'\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size = 4\ncycle_momentum = false",
        1,
        10,
    );
    assert_eq!(s.momentum(3), None);
}

// ---- one cycle ------------------------------------------------------------------------------

#[test]
fn one_cycle_pytorch_start_peak_end() {
    let s = sched("kind = 'one_cycle'\nmax_lr = 1.0", 1, 10);
    assert_eq!(s.lr(0), 0.040000000000000036);
    assert_eq!(s.lr(2), 1.0);
    assert_close(s.lr(9), 4e-6, 1e-12);
    assert_close(s.lr(5), 0.6112620219362893, 1e-14);
    assert_all_close(
        &moms(&s, 0..4),
        &[0.95, 0.8999999999999999, 0.85, 0.854951556604879],
        1e-14,
    );
    assert_eq!(s.momentum(9), Some(0.95));
    // Past the run the last values are held (PyTorch raises instead).
    assert_eq!(s.lr(10), s.lr(9));
    // three_phase: 0.04, 0.52, 1.0, 0.52, 0.04, ..., 4e-06.
    let s = sched(
        "kind = 'one_cycle'\nmax_lr = 1.0\nthree_phase = true",
        1,
        10,
    );
    assert_all_close(
        &lrs(&s, 0..10),
        &[
            0.040000000000000036,
            0.52,
            1.0,
            0.52,
            0.04,
            0.0361807218535102,
            0.0261817218535102,
            0.013822278146489805,
            0.0038232781464898036,
            4e-06,
        ],
        1e-12,
    );
    // OneCycleLR(0.01, total 100, pct .25): peak exactly at pct*N - 1 = 24.
    let s = sched("kind = 'one_cycle'\nmax_lr = 0.01\npct_start = 0.25", 4, 25);
    assert_eq!(s.lr(0), 0.0003999999999999993);
    assert_close(s.lr(1), 0.0004410646654057094, 1e-14);
    assert_eq!(s.lr(24), 0.01);
    assert_close(s.lr(98), 4.42583196231006e-6, 1e-12);
    assert_close(s.lr(99), 4e-8, 1e-12);
}

#[test]
fn one_cycle_smith_super_convergence() {
    // 0.1 -> 3.0 -> 0.1 over 9000 iterations, then annihilation to 0.001 by iteration 9999.
    let s = sched(
        "kind = 'one_cycle'\nconvention = 'smith'\nmax_lr = 3.0\ndiv_factor = 30",
        100,
        100,
    );
    assert_close(s.lr(0), 0.1, 1e-15);
    assert_close(s.lr(2250), 1.55, 1e-14);
    assert_close(s.lr(4500), 3.0, 1e-15);
    assert_close(s.lr(9000), 0.1, 1e-14);
    assert_close(s.lr(9500), 0.1 + (0.001 - 0.1) * 500.0 / 999.0, 1e-13);
    assert_close(s.lr(9999), 0.001, 1e-14);
    for (k, m) in [
        (0, 0.95),
        (2250, 0.9),
        (4500, 0.85),
        (9000, 0.95),
        (9500, 0.95),
        (9999, 0.95),
    ] {
        assert_close(s.momentum(k).unwrap(), m, 1e-14);
    }
    // Linear in between: equal steps up and down.
    let (a, b, c) = (s.lr(1000), s.lr(1001), s.lr(1002));
    assert_close(b - a, c - b, 1e-9);
    assert_close(b - a, 2.9 / 4500.0, 1e-9);
    // Defaults: div 10, pct 0.5, annihilation 10%, final = initial / 100.
    let s = sched(
        "kind = 'one_cycle'\nconvention = 'smith'\nmax_lr = 1",
        10,
        100,
    );
    assert_close(s.lr(0), 0.1, 1e-15);
    assert_close(s.lr(450), 1.0, 1e-15);
    assert_close(s.lr(999), 0.001, 1e-14);
}

#[test]
fn one_cycle_fastai_values() {
    // fastai fit_one_cycle(1e-2) over 20 batches (reference notes §6); fastai computes its phase
    // positions in f32, lrlab in f64.
    let s = sched(
        "kind = 'one_cycle'\nconvention = 'fastai'\nmax_lr = 1e-2",
        1,
        20,
    );
    assert_all_close(
        &lrs(&s, 0..6),
        &[
            0.0004,
            0.0013167184534158176,
            0.003716718512482818,
            0.00668328191493,
            0.009083281678662004,
            0.01,
        ],
        2e-5,
    );
    for (k, m) in [0.95, 0.94045, 0.91545, 0.88455, 0.85955, 0.85]
        .into_iter()
        .enumerate()
    {
        assert!((s.momentum(k as u64).unwrap() - m).abs() < 1e-5);
    }
    // The end value lr_max / 1e5 is never reached: the last position is 19/20.
    assert!((s.lr(19) / 1e-2 - 0.0109).abs() < 5e-5);
    // fit_flat_cos(lr 0.01) over 10 batches: 0.01 x 8, 0.009045, 0.003455.
    let s = sched("kind = 'flat_cosine'\nlr = 0.01", 1, 10);
    assert!((0..8).all(|k| s.lr(k) == 0.01));
    assert!((s.lr(8) - 0.009045).abs() < 5e-7);
    assert!((s.lr(9) - 0.003455).abs() < 5e-7);
}

// ---- warmup ---------------------------------------------------------------------------------

#[test]
fn warmup_prefix_and_overlay_against_timm() {
    let f = |t: f64| 0.05 * (1.0 + (PI * t / 5.0).cos()); // cosine over 5 steps, b 0.1
                                                          // timm prefix (t_initial 5, warmup 2, init 0.01): 0.01, 0.055, 0.1, 0.0905, ...
    let s = sched(
        "kind = 'cosine'\nlr_max = 0.1\nwarmup_steps = 2\nwarmup_start_lr = 0.01",
        7,
        1,
    );
    assert_all_close(
        &lrs(&s, 0..7),
        &[0.01, 0.055, 0.1, f(1.0), f(2.0), f(3.0), f(4.0)],
        1e-14,
    );
    assert!((s.lr(3) - 0.0905).abs() < 1e-4);
    // Overlay: from step W on the schedule keeps its timing, as timm's overlay does
    // (timm: 0.01, 0.055, 0.0655, 0.0345, 0.0095, 0, 0); lrlab ramps to f(W) instead of the
    // base LR, so it does not jump down at step W.
    let s = sched(
        "kind = 'cosine'\nlr_max = 0.1\nwarmup_steps = 2\nwarmup_start_lr = 0.01\nwarmup_mode = 'overlay'",
        5,
        1,
    );
    let timm = [0.01, 0.055, 0.0655, 0.0345, 0.0095, 0.0, 0.0];
    for k in 2..7 {
        assert!((s.lr(k) - timm[k as usize]).abs() < 1e-4, "step {k}");
    }
    assert_eq!(s.lr(0), 0.01);
    assert_close(s.lr(1), (0.01 + f(2.0)) / 2.0, 1e-14);
    assert_close(s.lr(2), f(2.0), 1e-14);
}

#[test]
fn warmup_start_lr_choice() {
    // Omitted: the ramp starts from 0 one step before step 0, so no step runs at LR 0.
    let s = sched("kind = 'cosine'\nlr_max = 0.3\nwarmup_steps = 2", 7, 1);
    assert_all_close(&lrs(&s, 0..3), &[0.1, 0.2, 0.3], 1e-15);
    // Explicit 0: timm / HF transformers (step 0 at LR 0).
    let s = sched(
        "kind = 'cosine'\nlr_max = 0.3\nwarmup_steps = 2\nwarmup_start_lr = 0",
        7,
        1,
    );
    assert_all_close(&lrs(&s, 0..3), &[0.0, 0.15, 0.3], 1e-15);
    // Fractional epochs: half an epoch of 4 steps is 2 steps.
    let s = sched(
        "kind = 'constant'\nlr = 1\nwarmup_epochs = 0.5\nwarmup_start_lr = 0",
        3,
        4,
    );
    assert_eq!(s.warmup_steps(), 2);
    assert_eq!(lrs(&s, 0..4), vec![0.0, 0.5, 1.0, 1.0]);
    // Zero warmup is no warmup.
    let s = sched("kind = 'constant'\nlr = 1\nwarmup_steps = 0", 3, 4);
    assert_eq!(s.warmup_steps(), 0);
    assert_eq!(s.lr(0), 1.0);
}

#[test]
fn warmup_shifts_restarts_and_keeps_momentum() {
    let s = sched(
        "kind = 'sgdr'\nlr_max = 0.1\nt_0 = 1\nwarmup_steps = 5",
        4,
        10,
    );
    assert_eq!(s.cycle_ends(), vec![15, 25, 35]);
    assert_eq!(s.lr(5), 0.1);
    assert_eq!(s.lr(15), 0.1);
    // Prefix warmup before 1cycle: momentum holds the schedule's step-0 value.
    let s = sched("kind = 'one_cycle'\nmax_lr = 1\nwarmup_steps = 3", 1, 13);
    assert_eq!(s.momentum(0), Some(0.95));
    assert_eq!(s.momentum(3), Some(0.95));
    assert_eq!(s.lr(5), 1.0);
    // timm's Tanh overlay targets f(W): continuous (0, 0.04997, 0.09994 (printed), 0.0982).
    let s = sched("kind = 'tanh'\nlr_max = 0.1\nwarmup_steps = 2\nwarmup_start_lr = 0\nwarmup_mode = 'overlay'", 6, 1);
    assert_eq!(s.lr(0), 0.0);
    assert_close(s.lr(1), s.lr(2) / 2.0, 1e-15);
    assert!((s.lr(1) - 0.04997).abs() < 1e-5);
    assert!((s.lr(3) - 0.0982).abs() < 1e-4);
}

// ---- sequence -------------------------------------------------------------------------------

#[test]
fn sequence_children_restart_at_their_milestones() {
    let spec = r#"
kind = "sequence"
milestones = [2, 5]
[[schedules]]
kind = "constant"
lr = 0.1
[[schedules]]
kind = "cosine"
lr_max = 0.05
[[schedules]]
kind = "sgdr"
lr_max = 0.02
t_0 = 1
"#;
    let s = sched(spec, 8, 3);
    assert_eq!(s.kind(), "sequence");
    assert!((0..6).all(|k| s.lr(k) == 0.1));
    // The cosine child spans steps 6..15 (9 steps) and starts at its own step 0.
    assert_eq!(s.lr(6), 0.05);
    assert_close(s.lr(14), 0.025 * (1.0 + (PI * 8.0 / 9.0).cos()), 1e-14);
    // The SGDR child restarts at 15 and every epoch (3 steps) after it.
    assert_eq!(s.lr(15), 0.02);
    assert_eq!(s.cycle_ends(), vec![18, 21, 24]);
    assert_eq!(s.momentum(20), None);
    // A fractional milestone: epoch 1.5 of 2-step epochs is step 3.
    let s = sched(
        "kind = 'sequence'\nmilestones = [1.5]\nschedules = [{ kind = 'constant', lr = 1 }, { kind = 'constant', lr = 2 }]",
        3,
        2,
    );
    assert_eq!(lrs(&s, 0..5), vec![1.0, 1.0, 1.0, 2.0, 2.0]);
    // Children with momentum keep it; a child that leaves it gives None.
    let s = sched(
        "kind = 'sequence'\nmilestones = [1]\nschedules = [{ kind = 'constant', lr = 0.1 }, { kind = 'one_cycle', max_lr = 1 }]",
        11,
        10,
    );
    assert_eq!(s.momentum(9), None);
    assert_eq!(s.momentum(10), Some(0.95));
    assert_close(s.lr(109), 4e-6, 1e-12);
}

// ---- tanh, wsd, range -----------------------------------------------------------------------

#[test]
fn tanh_follows_timm() {
    let s = sched("kind = 'tanh'\nlr_max = 0.1\nlr_min = 0.001", 6, 1);
    let f = |tr: f64| 0.001 + 0.5 * (0.1 - 0.001) * (1.0 - (-7.0 * (1.0 - tr) + 3.0 * tr).tanh());
    for k in 0..6 {
        assert_close(s.lr(k), f(k as f64 / 6.0), 1e-15);
    }
    assert_close(s.lr(3), 0.001 + 0.0495 * (1.0 + 2f64.tanh()), 1e-15);
    assert_eq!(s.lr(6), 0.001);
    assert!((1..6).all(|k| s.lr(k) < s.lr(k - 1)));
}

#[test]
fn wsd_shapes() {
    let base = "kind = 'wsd'\nlr = 1";
    let s = sched(base, 100, 1); // decay_pct 0.2: steps 80..100, 1-sqrt
    assert_eq!(s.lr(80), 1.0);
    assert_close(s.lr(85), 0.5, 1e-15);
    assert_close(s.lr(99), 1.0 - (19.0f64 / 20.0).sqrt(), 1e-14);
    let s = sched(&format!("{base}\ndecay_shape = 'linear'"), 100, 1);
    assert_close(s.lr(90), 0.5, 1e-15);
    let s = sched(
        &format!("{base}\ndecay_shape = 'cosine'\nlr_min = 0.1"),
        100,
        1,
    );
    assert_close(s.lr(90), 0.55, 1e-15);
    let s = sched(
        &format!("{base}\ndecay_shape = 'exp'\ndecay_steps = 10"),
        100,
        1,
    );
    assert_close(s.lr(95), (0.1f64.sqrt() - 0.1) / 0.9, 1e-14);
    let s = sched(
        &format!("{base}\ndecay_shape = 'power'\ndecay_power = 2\ndecay_epochs = 2"),
        10,
        10,
    );
    assert_close(s.lr(90), 0.75, 1e-15);
    // timm's warmup is a prefix: the schedule starts after it.
    let s = sched(
        &format!("{base}\nwarmup_steps = 10\nwarmup_start_lr = 0"),
        110,
        1,
    );
    assert_close(s.lr(5), 0.5, 1e-15);
    assert_close(s.lr(95), 0.5, 1e-15);
}

#[test]
fn lr_range_reaches_the_end_at_the_last_step() {
    let s = sched("kind = 'lr_range'\nstart_lr = 1e-7\nend_lr = 10", 1, 100);
    assert_eq!(s.lr(0), 1e-7);
    assert_close(s.lr(99), 10.0, 1e-14);
    let r = s.lr(1) / s.lr(0);
    for k in 1..99 {
        assert_close(s.lr(k + 1) / s.lr(k), r, 1e-10);
    }
    let s = sched(
        "kind = 'lr_range'\nstart_lr = 0.01\nend_lr = 1\nmode = 'linear'",
        1,
        100,
    );
    assert_close(s.lr(33), 0.34, 1e-14);
    assert_eq!(s.lr(99), 1.0);
}

#[test]
fn families_report_kind_and_momentum_ownership() {
    for (spec, kind, cycled) in [
        ("kind = 'constant'\nlr = 1", "constant", false),
        ("type = 'cosine'\nlr_max = 1", "cosine", false),
        (
            "family = 'clr'\nbase_lr = 0.1\nmax_lr = 1\nstep_size = 2",
            "clr",
            true,
        ),
        ("kind = 'one_cycle'\nmax_lr = 1", "one_cycle", true),
        (
            "kind = 'one_cycle'\nmax_lr = 1\ncycle_momentum = false",
            "one_cycle",
            false,
        ),
        ("kind = 'sgdr'\nlr_max = 1\nt_0 = 1", "sgdr", false),
    ] {
        let s = sched(spec, 10, 10);
        assert_eq!(s.kind(), kind);
        assert_eq!(s.momentum(5).is_some(), cycled, "{spec}");
    }
    assert!(sched("kind = 'cosine'\nlr_max = 1", 10, 10)
        .cycle_ends()
        .is_empty());
}

#[test]
fn k_decay_bends_the_cosine_phase_and_one_changes_nothing() {
    // Half-way through a 100-step cosine with κ = 2: phase π · 50² / 100² = π/4.
    let s = sched("kind = 'cosine'\nlr_max = 1\nk_decay = 2", 10, 10);
    let want = 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos());
    assert_close(s.lr(50), want, 1e-15);
    // SGDR: each cycle bends the same way (t_0 = 2 epochs of 10 steps; step 30 is half-way
    // through the second cycle).
    let s = sched("kind = 'sgdr'\nlr_max = 1\nt_0 = 2\nk_decay = 2", 10, 10);
    assert_close(s.lr(10), want, 1e-15);
    assert_close(s.lr(30), want, 1e-15);
    for (with, without) in [
        (
            "kind = 'cosine'\nlr_max = 0.1\nlr_min = 0.001\nk_decay = 1",
            "kind = 'cosine'\nlr_max = 0.1\nlr_min = 0.001",
        ),
        (
            "kind = 'sgdr'\nlr_max = 0.1\nt_0 = 3\nt_mult = 2\nk_decay = 1.0",
            "kind = 'sgdr'\nlr_max = 0.1\nt_0 = 3\nt_mult = 2",
        ),
    ] {
        let (a, b) = (sched(with, 10, 7), sched(without, 10, 7));
        for k in 0..70 {
            assert_eq!(a.lr(k), b.lr(k), "{with}: step {k}");
        }
    }
}

#[test]
fn conventions_differ_only_where_the_libraries_do() {
    // Keras' restart decay shrinks the part above lr_min: with lr_min = 0 it is timm's.
    let base = "kind = 'sgdr'\nlr_max = 0.1\nt_0 = 1\nt_mult = 2\nrestart_decay = 0.5";
    let (a, b) = (
        sched(&format!("{base}\nconvention = 'keras'"), 7, 4),
        sched(base, 7, 4),
    );
    for k in 0..28 {
        assert_eq!(a.lr(k), b.lr(k), "step {k}");
    }
    let a = sched(
        &format!("{base}\nlr_min = 0.01\nconvention = 'keras'"),
        7,
        4,
    );
    let b = sched(&format!("{base}\nlr_min = 0.01"), 7, 4);
    // The second cycle's peak (step 4): 0.01 + 0.09 · 0.5 against 0.1 · 0.5.
    assert_close(a.lr(4), 0.055, 1e-15);
    assert_close(b.lr(4), 0.05, 1e-15);
    // timm's tanh: only update 0 differs, at the base LR.
    let t = "kind = 'tanh'\nlr_max = 0.1";
    let (a, b) = (
        sched(&format!("{t}\nconvention = 'timm'"), 2, 5),
        sched(t, 2, 5),
    );
    assert_eq!(a.lr(0), 0.1);
    assert!(b.lr(0) < 0.1);
    for k in 1..10 {
        assert_eq!(a.lr(k), b.lr(k));
    }
}
