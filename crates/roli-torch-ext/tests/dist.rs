//! The c10d/Gloo process group across real processes: this test binary starts itself as two ranks
//! on localhost (the way `torchrun --no-python` would, through RANK / WORLD_SIZE / MASTER_ADDR /
//! MASTER_PORT) and checks every collective; and a rank whose peer never comes fails within the
//! timeout instead of hanging.
use roli_torch_ext::dist::ProcessGroup;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// This binary as rank `rank` of `world`, running only the `rank_main` test.
fn spawn_rank(rank: usize, world: usize, port: u16, timeout_ms: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rank_main", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("ROLI_DIST_TIMEOUT_MS", timeout_ms.to_string())
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`, killing it after that; returns (success, stdout + stderr).
fn wait(mut child: std::process::Child, limit: Duration) -> (bool, String) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            return (status.success(), text);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("a rank hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One rank's work (run by the spawned processes only: `#[ignore]` keeps it out of normal runs).
#[test]
#[ignore = "a rank of the two-process tests, started by them with RANK/WORLD_SIZE set"]
fn rank_main() {
    let ms: u64 = std::env::var("ROLI_DIST_TIMEOUT_MS").unwrap().parse().unwrap();
    let pg = match ProcessGroup::from_env(Duration::from_millis(ms)) {
        Ok(Some(pg)) => pg,
        Ok(None) => panic!("WORLD_SIZE not set"),
        Err(e) => {
            println!("RANK-ERROR: {e}");
            std::process::exit(3);
        }
    };
    let (rank, world) = (pg.rank() as f64, pg.world_size() as i64);
    // Sum: ranks hold 1 and 2 → both see 3.
    let t = Tensor::full([4], rank + 1.0, (Kind::Float, tch::Device::Cpu));
    pg.all_reduce_sum(&t).unwrap();
    assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![3.0; 4]);
    // Broadcast from rank 1.
    let b = Tensor::full([3], 10.0 * (rank + 1.0), (Kind::Float, tch::Device::Cpu));
    pg.broadcast(&b, 1).unwrap();
    assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![20.0; 3]);
    // All-gather in rank order.
    let g = pg.all_gather(&Tensor::from_slice(&[rank as i64, 7])).unwrap();
    assert_eq!(g.size(), vec![world, 2]);
    assert_eq!(Vec::<i64>::try_from(&g.reshape([-1])).unwrap(), vec![0, 7, 1, 7]);
    pg.barrier().unwrap();
    println!("RANK-OK {}", pg.rank());
}

#[test]
fn two_ranks_sum_broadcast_and_gather() {
    let port = free_port();
    let children: Vec<_> = (0..2).map(|r| spawn_rank(r, 2, port, 30_000)).collect();
    for (r, c) in children.into_iter().enumerate() {
        let (ok, text) = wait(c, Duration::from_secs(60));
        assert!(ok && text.contains(&format!("RANK-OK {r}")), "rank {r} failed:\n{text}");
    }
}

#[test]
fn a_missing_rank_is_an_error_within_the_timeout_not_a_hang() {
    let t0 = Instant::now();
    let (ok, text) = wait(spawn_rank(0, 2, free_port(), 2_000), Duration::from_secs(60));
    assert!(!ok && text.contains("RANK-ERROR"), "rank 0 alone should fail:\n{text}");
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());
}

#[test]
fn torchrun_no_python_launches_two_ranks_on_its_own_store() {
    let torchrun = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/torchrun");
    if !torchrun.is_file() {
        println!("skipped: no {} (make setup creates it)", torchrun.display());
        return;
    }
    let child = Command::new(&torchrun)
        .args(["--no-python", "--nproc_per_node", "2", "--master_port", &free_port().to_string()])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "rank_main", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("ROLI_DIST_TIMEOUT_MS", "30000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ok, text) = wait(child, Duration::from_secs(120));
    assert!(ok && text.contains("RANK-OK 0") && text.contains("RANK-OK 1"), "torchrun failed:\n{text}");
}
