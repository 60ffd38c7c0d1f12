//! What can be checked without a GPU: autocast on CPU, the global switches' round trips, the CUDA
//! and memory queries answering "none" instead of failing, the kernels against plain tch ops.
use roli_torch_ext::kernels::{foreach, fused_adamw_, fused_sgd_};
use roli_torch_ext::{autocast, memory, MatmulPrecision};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// The switches are process-wide and tests run on parallel threads.
static GLOBAL: Mutex<()> = Mutex::new(());

fn mats() -> (Tensor, Tensor) {
    tch::manual_seed(0);
    (Tensor::randn([4, 8], (Kind::Float, Device::Cpu)), Tensor::randn([8, 3], (Kind::Float, Device::Cpu)))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn cpu_autocast_bf16_applies_inside_the_scope_only() {
    let (a, b) = mats();
    let before = autocast::state(Device::Cpu).unwrap();
    assert!(!before.0, "autocast starts disabled");
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
    let inside = autocast::scope(Device::Cpu, Kind::BFloat16, || {
        assert_eq!(autocast::state(Device::Cpu).unwrap(), (true, Kind::BFloat16));
        a.matmul(&b).kind()
    })
    .unwrap();
    assert_eq!(inside, Kind::BFloat16);
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
    assert_eq!(autocast::state(Device::Cpu).unwrap(), before, "previous flag and dtype restored");
}

#[test]
fn nested_scopes_restore_the_enclosing_one() {
    let (a, b) = mats();
    let before = autocast::state(Device::Cpu).unwrap();
    autocast::scope(Device::Cpu, Kind::BFloat16, || {
        autocast::scope(Device::Cpu, Kind::Half, || {
            assert_eq!(autocast::state(Device::Cpu).unwrap(), (true, Kind::Half));
            assert_eq!(a.matmul(&b).kind(), Kind::Half);
        })
        .unwrap();
        assert_eq!(autocast::state(Device::Cpu).unwrap(), (true, Kind::BFloat16));
        assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
    })
    .unwrap();
    assert_eq!(autocast::state(Device::Cpu).unwrap(), before);
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
}

#[test]
fn a_panic_inside_the_scope_still_restores() {
    let before = autocast::state(Device::Cpu).unwrap();
    let r = std::panic::catch_unwind(|| {
        autocast::scope(Device::Cpu, Kind::BFloat16, || panic!("inside")).unwrap();
    });
    assert!(r.is_err());
    assert_eq!(autocast::state(Device::Cpu).unwrap(), before);
    let (a, b) = mats();
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
}

#[test]
fn autocast_state_is_per_thread() {
    autocast::scope(Device::Cpu, Kind::BFloat16, || {
        let other = std::thread::spawn(|| autocast::state(Device::Cpu).unwrap()).join().unwrap();
        assert!(!other.0, "another thread does not see this thread's autocast");
    })
    .unwrap();
}

#[test]
fn unsupported_autocast_dtype_is_an_error_not_a_crash() {
    let e = autocast::scope(Device::Cpu, Kind::Float, || ()).unwrap_err();
    assert_eq!(e.call, "autocast_enter");
    assert!(e.message.contains("Half or BFloat16"), "{e}");
    assert!(!e.to_string().contains('\n'));
    assert!(!autocast::state(Device::Cpu).unwrap().0, "a failed enter leaves autocast off");
}

#[test]
fn matmul_precision_round_trips() {
    let _g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    let start = roli_torch_ext::float32_matmul_precision().unwrap();
    assert_eq!(start, MatmulPrecision::Highest, "libtorch's default");
    for p in [MatmulPrecision::High, MatmulPrecision::Medium, MatmulPrecision::Highest] {
        roli_torch_ext::set_float32_matmul_precision(p).unwrap();
        assert_eq!(roli_torch_ext::float32_matmul_precision().unwrap(), p);
    }
}

#[test]
fn cudnn_switches_round_trip() {
    let _g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    let tf32 = roli_torch_ext::cudnn_allow_tf32().unwrap();
    roli_torch_ext::set_cudnn_allow_tf32(!tf32).unwrap();
    assert_eq!(roli_torch_ext::cudnn_allow_tf32().unwrap(), !tf32);
    roli_torch_ext::set_cudnn_allow_tf32(tf32).unwrap();
    assert_eq!(roli_torch_ext::cudnn_allow_tf32().unwrap(), tf32);

    assert!(!roli_torch_ext::cudnn_benchmark().unwrap(), "libtorch's default");
    roli_torch_ext::set_cudnn_benchmark(true).unwrap();
    assert!(roli_torch_ext::cudnn_benchmark().unwrap());
    roli_torch_ext::set_cudnn_benchmark(false).unwrap();
    assert!(!roli_torch_ext::cudnn_benchmark().unwrap());
}

#[test]
fn deterministic_flag_round_trips() {
    let _g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(!roli_torch_ext::deterministic().unwrap(), "libtorch's default");
    roli_torch_ext::set_deterministic(true).unwrap();
    assert!(roli_torch_ext::deterministic().unwrap());
    // Deterministic CPU matmul still runs.
    let (a, b) = mats();
    assert_eq!(a.matmul(&b).size(), [4, 3]);
    roli_torch_ext::set_deterministic(false).unwrap();
    assert!(!roli_torch_ext::deterministic().unwrap());
}

#[test]
fn cuda_queries_answer_none_without_cuda() {
    // This test binary does not link libtorch_cuda, so libtorch sees no CUDA even on a GPU machine.
    assert_eq!(roli_torch_ext::cuda_versions().unwrap(), None);
    assert_eq!(roli_torch_ext::cuda_device_name(0).unwrap(), None, "no CUDA device here");
    assert_eq!(memory::stats(0).unwrap(), None);
    assert_eq!(memory::peak_allocated(0).unwrap(), None);
    assert!(!memory::reset_peak(0).unwrap());
    assert_eq!(memory::info(0).unwrap(), None);
}

#[test]
fn cuda_versions_display() {
    let v = roli_torch_ext::CudaVersions { runtime: 13000, cudnn: Some(91300), gpus: 1 };
    assert_eq!(v.to_string(), "CUDA 13.0, cuDNN 9.13.0, 1 GPU(s)");
    let v = roli_torch_ext::CudaVersions { runtime: 12080, cudnn: Some(8902), gpus: 2 };
    assert_eq!(v.to_string(), "CUDA 12.8, cuDNN 8.9.2, 2 GPU(s)");
}

fn seeded(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

#[test]
fn foreach_ops_equal_single_tensor_ops_bit_for_bit() {
    let a = vec![seeded(&[5, 3], 1), seeded(&[7], 2)];
    let b: Vec<Tensor> = vec![seeded(&[5, 3], 3).abs() + 0.5, seeded(&[7], 4).abs() + 0.5];
    type Single = fn(&Tensor, &Tensor) -> Tensor;
    let cases: [(foreach::Op, Single); 4] = [
        (foreach::Op::Add, |x, y| x + y),
        (foreach::Op::Sub, |x, y| x - y),
        (foreach::Op::Mul, |x, y| x * y),
        (foreach::Op::Div, |x, y| x / y),
    ];
    for (op, f) in cases {
        let got = foreach::list(op, &a, &b).unwrap();
        for i in 0..2 {
            assert!(got[i].equal(&f(&a[i], &b[i])), "{op:?} list, tensor {i}");
        }
        let got = foreach::scalar(op, &a, 0.3).unwrap();
        for i in 0..2 {
            assert!(got[i].equal(&f(&a[i], &Tensor::from(0.3f32))), "{op:?} scalar, tensor {i}");
        }
        let inplace: Vec<Tensor> = a.iter().map(|t| t.copy()).collect();
        foreach::list_(op, &inplace, &b).unwrap();
        for i in 0..2 {
            assert!(inplace[i].equal(&f(&a[i], &b[i])), "{op:?} list_, tensor {i}");
        }
        let inplace: Vec<Tensor> = a.iter().map(|t| t.copy()).collect();
        foreach::scalar_(op, &inplace, 0.3).unwrap();
        for i in 0..2 {
            assert!(inplace[i].equal(&f(&a[i], &Tensor::from(0.3f32))), "{op:?} scalar_, tensor {i}");
        }
    }
    let got = foreach::sqrt(&b).unwrap();
    assert!(got[0].equal(&b[0].sqrt()) && got[1].equal(&b[1].sqrt()));
    let c: Vec<Tensor> = b.iter().map(|t| t.copy()).collect();
    foreach::sqrt_(&c).unwrap();
    assert!(c[0].equal(&b[0].sqrt()) && c[1].equal(&b[1].sqrt()));
    assert!(foreach::scalar(foreach::Op::Mul, &Vec::<Tensor>::new(), 2.0).unwrap().is_empty());
}

#[test]
fn foreach_shape_mismatch_is_a_one_line_error() {
    let a = vec![seeded(&[5, 3], 1)];
    let b = vec![seeded(&[4], 2)];
    let e = foreach::list(foreach::Op::Add, &a, &b).unwrap_err();
    assert_eq!(e.call, "foreach_list");
    assert!(!e.message.is_empty() && !e.message.contains('\n'), "{e}");
    let e = foreach::list(foreach::Op::Add, &a, &[] as &[Tensor]).unwrap_err();
    assert!(e.message.contains("0 tensors for 1"), "{e}");
}

#[test]
fn fused_sgd_is_pytorch_sgd() {
    let p0 = seeded(&[6, 4], 5);
    let g = seeded(&[6, 4], 6);
    let (lr, mu, wd) = (0.1, 0.9, 0.01);
    let p = p0.copy();
    let buf = p0.zeros_like();
    fused_sgd_(&[&p], &[&g], &[&buf], lr, mu, wd, true).unwrap();
    let d = &g + &p0 * wd;
    assert!(max_abs_diff(&buf, &d) < 1e-6);
    let p1 = &p0 - &d * lr;
    assert!(max_abs_diff(&p, &p1) < 1e-6);
    fused_sgd_(&[&p], &[&g], &[&buf], lr, mu, wd, false).unwrap();
    let d2 = &g + &p1 * wd;
    let buf2 = &d * mu + &d2;
    assert!(max_abs_diff(&buf, &buf2) < 1e-6);
    assert!(max_abs_diff(&p, &(&p1 - &buf2 * lr)) < 1e-6);
    // No momentum: no buffers.
    let q = p0.copy();
    fused_sgd_(&[&q], &[&g], &[] as &[Tensor], lr, 0.0, 0.0, false).unwrap();
    assert!(max_abs_diff(&q, &(&p0 - &g * lr)) < 1e-6);
    assert!(fused_sgd_(&[&q], &[&g], &[&buf], lr, 0.0, 0.0, false).is_err());
}

#[test]
fn fused_adamw_is_pytorch_adamw() {
    let p0 = seeded(&[10], 7);
    let g = seeded(&[10], 8);
    let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
    let p = p0.copy();
    let (m, v) = (p0.zeros_like(), p0.zeros_like());
    let step = Tensor::from_slice(&[1.0f32]);
    fused_adamw_(&[&p], &[&g], &[&m], &[&v], &[&step], lr, (b1, b2), eps, wd).unwrap();
    let decayed = &p0 * (1.0 - lr * wd);
    let m1 = &g * (1.0 - b1);
    let v1 = &g * &g * (1.0 - b2);
    let (bc1, bc2) = (1.0 - b1, 1.0 - b2);
    let expect = &decayed - (&m1 / (v1.sqrt() / bc2.sqrt() + eps)) * (lr / bc1);
    assert!(max_abs_diff(&m, &m1) < 1e-7 && max_abs_diff(&v, &v1) < 1e-7);
    assert!(max_abs_diff(&p, &expect) < 1e-6, "{}", max_abs_diff(&p, &expect));
}

#[test]
fn fused_kernels_refuse_what_the_cpu_kernel_would_get_wrong() {
    let p = seeded(&[3, 4], 9);
    let g_transposed = seeded(&[4, 3], 10).transpose(0, 1);
    let e = fused_sgd_(&[&p], &[&g_transposed], &[&p.zeros_like()], 0.1, 0.9, 0.0, true).unwrap_err();
    assert!(e.message.contains("strides"), "{e}");
    let g_double = seeded(&[3, 4], 10).to_kind(Kind::Double);
    let e = fused_sgd_(&[&p], &[&g_double], &[] as &[Tensor], 0.1, 0.0, 0.0, false).unwrap_err();
    assert!(e.message.contains("Double"), "{e}");
    let short = seeded(&[5], 11);
    let e = fused_sgd_(&[&p], &[&g_transposed.contiguous()], &[&short], 0.1, 0.9, 0.0, false).unwrap_err();
    assert!(e.message.contains("momentum buffer"), "{e}");
    let every_other = seeded(&[3, 8], 12).slice(1, 0, 8, 2);
    let e =
        fused_sgd_(&[&every_other], &[&every_other.contiguous()], &[] as &[Tensor], 0.1, 0.0, 0.0, false).unwrap_err();
    assert!(e.message.contains("not dense"), "{e}");
}

#[test]
fn fused_sgd_handles_dense_non_contiguous_parameters() {
    // A transposed parameter and a gradient with the same layout: elementwise over raw memory is right.
    let p0 = seeded(&[4, 3], 13).transpose(0, 1);
    let g = seeded(&[4, 3], 14).transpose(0, 1);
    let p = p0.copy();
    let p = p.transpose(0, 1).contiguous().transpose(0, 1); // same layout as p0
    assert_eq!(p.stride(), g.stride());
    fused_sgd_(&[&p], &[&g], &[] as &[Tensor], 0.5, 0.0, 0.1, false).unwrap();
    assert!(max_abs_diff(&p, &(&p0 - (&g + &p0 * 0.1) * 0.5)) < 1e-6);
}
