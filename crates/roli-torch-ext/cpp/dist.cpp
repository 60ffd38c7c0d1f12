// roli-torch-ext's process group: libtorch's own c10d (TCPStore + ProcessGroupGloo), the engine
// torch.distributed runs on, for the CPU. A separate translation unit because the c10d headers are
// slow to compile and need gloo's headers (set-up unpacks Debian's libgloo-dev; the symbols are in
// libtorch_cpu). Every entry point catches C++ exceptions and returns 1 with the message in `err`.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include "guard.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

using roli_ext::fail;
using roli_ext::guarded;

}  // namespace

// The opaque handle Rust holds.
struct RoliProcessGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

extern "C" {

// Joins (rank 0: hosts, unless torchrun's agent already does) the TCP store at host:port, then
// builds a Gloo process group of `world` ranks over it. `timeout_ms` bounds every wait, so a
// missing or dead rank is an error, not a hang.
int roli_dist_gloo_init(const char* host, int port, int rank, int world, int64_t timeout_ms,
                        RoliProcessGroup** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    *out = nullptr;
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = static_cast<std::size_t>(world);
    o.waitWorkers = true;
    o.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), o);
    // The same prefix torch.distributed uses for its default group.
    auto store = c10::make_intrusive<c10d::PrefixStore>("default_pg", tcp);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
    *out = new RoliProcessGroup{store, pg};
  });
}

void roli_dist_free(RoliProcessGroup* g) { delete g; }

// In-place sum over the ranks of one tensor.
int roli_dist_all_reduce_sum(RoliProcessGroup* g, const at::Tensor* t, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> v{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    g->pg->allreduce(v, o)->wait();
  });
}

// In place: every rank ends with `root`'s tensor.
int roli_dist_broadcast(RoliProcessGroup* g, const at::Tensor* t, int root, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> v{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    g->pg->broadcast(v, o)->wait();
  });
}

// `out` (world × the input's shape, preallocated) receives every rank's `t`, in rank order.
int roli_dist_all_gather(RoliProcessGroup* g, const at::Tensor* t, const at::Tensor* out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> input{*t};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int64_t r = 0; r < out->size(0); ++r) output[0].push_back(out->select(0, r));
    g->pg->allgather(output, input)->wait();
  });
}

int roli_dist_barrier(RoliProcessGroup* g, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { g->pg->barrier()->wait(); });
}

}  // extern "C"
