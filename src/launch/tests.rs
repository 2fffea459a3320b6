use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn the_first_host_of_a_slurm_host_list() {
    for (list, first) in [
        ("node07", "node07"),
        ("a,b", "a"),
        ("node[07-09,12],gpu1", "node07"),
        ("gpu[3]", "gpu3"),
        ("rack1-n[003-010]-ib,x", "rack1-n003-ib"),
        ("c[1,5]", "c1"),
    ] {
        assert_eq!(first_host(list).as_deref(), Some(first), "{list}");
    }
    for bad in ["", "node[", "node[]", "node[a-b]"] {
        assert_eq!(first_host(bad), None, "{bad}");
    }
}

/// An srun task's variables give the same rendezvous on every task; a batch script's own
/// process (no step of several tasks) and a world of one stay single; torchrun's
/// variables win over Slurm's.
#[test]
fn srun_variables_give_one_rendezvous_to_every_task() {
    fn task(procid: &str) -> Vec<(&str, &str)> {
        vec![
            ("SLURM_STEP_ID", "2"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_PROCID", procid),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_ID", "123456"),
            ("SLURM_STEP_NODELIST", "gpu[04-05]"),
            ("SLURM_JOB_NODELIST", "gpu[01-05]"),
        ]
    }
    let mut seen = Vec::new();
    for r in 0..4 {
        let procid = r.to_string();
        let got = rendezvous_from(env_of(&task(&procid)), 30.0)
            .unwrap()
            .expect("a rank");
        assert_eq!((got.rank, got.world), (r, 4));
        assert_eq!(got.addr, "gpu04");
        assert_eq!(got.listen_fd, None);
        seen.push(got.port);
    }
    assert!(seen.iter().all(|p| *p == seen[0]));
    assert_eq!(seen[0], slurm_port(123456, 2));
    assert_ne!(slurm_port(123456, 2), slurm_port(123456, 3));
    assert!((15_000..30_000).contains(&seen[0]));

    // MASTER_ADDR / MASTER_PORT win.
    let mut v = task("0");
    v.extend([("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")]);
    let got = rendezvous_from(env_of(&v), 30.0).unwrap().unwrap();
    assert_eq!((got.addr.as_str(), got.port), ("10.0.0.1", 29500));

    // torchrun's variables win over Slurm's.
    let mut v = task("3");
    v.extend([
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("MASTER_ADDR", "h"),
        ("MASTER_PORT", "1234"),
    ]);
    let got = rendezvous_from(env_of(&v), 30.0).unwrap().unwrap();
    assert_eq!((got.rank, got.world), (1, 2));

    // A batch script's process: the job has 4 tasks but this is no srun step.
    let batch = env_of(&[
        ("SLURM_NTASKS", "4"),
        ("SLURM_PROCID", "0"),
        ("SLURM_JOB_ID", "7"),
    ]);
    assert!(rendezvous_from(batch, 30.0).unwrap().is_none());
    // A step of one task.
    let one = env_of(&[
        ("SLURM_STEP_ID", "0"),
        ("SLURM_STEP_NUM_TASKS", "1"),
        ("SLURM_PROCID", "0"),
    ]);
    assert!(rendezvous_from(one, 30.0).unwrap().is_none());

    // A bad value is an input error naming the variable.
    let mut v = task("9");
    v.retain(|(k, _)| *k != "MASTER_ADDR");
    let e = rendezvous_from(env_of(&v), 30.0).unwrap_err();
    assert!(crate::is_input_error(&e));
    assert!(e.to_string().contains("SLURM_PROCID = \"9\""), "{e}");
}
