// Data-parallel collectives through libtorch's own c10d: a TCPStore rendezvous, then
// ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL (CUDA tensors). Rust holds an opaque
// handle. Every entry point follows guard.h's convention (0, or -1 and the message in `err`),
// so that a dead peer or a timeout is an error, not an abort.
//
// Gloo: the wheel exports ProcessGroupGloo but ships no gloo headers. Debian's libgloo-dev
// supplies them, but its gloo is older than the one compiled into the wheel, so its headers
// serve only as declarations: this file calls ProcessGroupGloo's exported API (Options,
// createDeviceForHostname, the constructor, collectives) and never constructs, copies or
// touches a gloo object itself, whose layout may differ from the wheel's.
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#ifdef LRLAB_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef LRLAB_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "guard.h"

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

using lrlab::guarded;
using lrlab::set_err;

std::vector<at::Tensor> tensors_of(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; i++) v.push_back(*ts[i]);
  return v;
}

// Wait for every work item, even after one failed, so that no collective is left running on
// buffers the caller is about to free; report the first failure.
void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works) {
  std::string first;
  for (auto& w : works) {
    try {
      w->wait();
    } catch (const c10::Error& e) {
      if (first.empty()) first = e.what_without_backtrace();
    } catch (const std::exception& e) {
      if (first.empty()) first = e.what();
    }
  }
  if (!first.empty()) throw std::runtime_error(first);
}

}  // namespace

extern "C" {

// Which backends this build has: bit 0 gloo, bit 1 nccl.
int lrlab_dist_backends() {
  int b = 0;
#ifdef LRLAB_GLOO
  b |= 1;
#endif
#ifdef LRLAB_NCCL
  b |= 2;
#endif
  return b;
}

// Join the group: rank 0 serves the TCPStore on `port` (on the already bound socket
// `listen_fd` when it is >= 0: a launcher binds the port itself, so that no other program can
// take it between choosing and serving), every rank connects to `addr:port`; backend 0 is
// gloo (bound to `gloo_host`), 1 is nccl. Blocks until all `world` ranks have joined or
// `timeout_ms` has passed.
// c10's log lines during the rendezvous: each retry of a connection prints a warning with a
// 30-line C++ backtrace, and under torchrun rank 0's store prints an error when it finds the
// agent's store on the port. The outcome reaches the user as this call's error (one line);
// the log level is raised for the call's duration only.
struct QuietLog {
  int old = FLAGS_caffe2_log_level;
  QuietLog() { FLAGS_caffe2_log_level = 3; }
  ~QuietLog() { FLAGS_caffe2_log_level = old; }
};

int lrlab_dist_init(int rank, int world, const char* addr, int port, int listen_fd, int backend,
                    const char* gloo_host, long timeout_ms, void** out, char* err,
                    size_t len) {
  QuietLog quiet;
  return guarded(err, len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = rank == 0;
    if (rank == 0 && listen_fd >= 0) o.masterListenFd = listen_fd;
    o.numWorkers = static_cast<std::size_t>(world);
    o.waitWorkers = true;
    o.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(addr), o);
    auto store = c10::make_intrusive<c10d::PrefixStore>("lrlab", tcp);
    auto g = new Group{store, {}, timeout};
    try {
      if (backend == 0) {
#ifdef LRLAB_GLOO
        auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
        opts->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForHostname(std::string(gloo_host)));
        g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
#else
        throw std::runtime_error(
            "this lrlab was built without gloo (install libgloo-dev and rebuild)");
#endif
      } else {
#ifdef LRLAB_NCCL
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = timeout;
        g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
#else
        throw std::runtime_error(
            "this lrlab was built without NCCL (its headers were not found at build time)");
#endif
      }
    } catch (...) {
      delete g;
      throw;
    }
    *out = g;
  });
}

// All-reduce each tensor in place (one collective per tensor, all in flight together):
// op 0 sums, 1 averages (a sum divided by the world size: gloo has no AVG).
int lrlab_dist_allreduce(void* h, at::Tensor** ts, size_t n, int op, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(h);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    std::vector<at::Tensor> all = tensors_of(ts, n);
    for (auto& t : all) {
      std::vector<at::Tensor> one{t};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      o.timeout = g->timeout;
      works.push_back(g->backend->allreduce(one, o));
    }
    wait_all(works);
    if (op == 1) {
      for (auto& t : all) t.div_(g->backend->getSize());
    }
  });
}

// Broadcast each tensor in place from `root`.
int lrlab_dist_broadcast(void* h, at::Tensor** ts, size_t n, int root, char* err,
                         size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(h);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& t : tensors_of(ts, n)) {
      std::vector<at::Tensor> one{t};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      o.timeout = g->timeout;
      works.push_back(g->backend->broadcast(one, o));
    }
    wait_all(works);
  });
}

// Wait until every rank has called it.
int lrlab_dist_barrier(void* h, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(h);
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    g->backend->barrier(o)->wait();
  });
}

// Key-value exchange through the rendezvous store (host names for meta.json).
int lrlab_dist_store_set(void* h, const char* key, const char* value, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(h);
    std::string v(value);
    g->store->set(std::string(key), std::vector<uint8_t>(v.begin(), v.end()));
  });
}

// Read `key` (waiting for it up to the group's timeout) into `value` (NUL-terminated,
// truncated to `cap` bytes).
int lrlab_dist_store_get(void* h, const char* key, char* value, size_t cap, char* err,
                         size_t len) {
  return guarded(err, len, [&] {
    auto g = static_cast<Group*>(h);
    auto v = g->store->get(std::string(key));
    std::string s(v.begin(), v.end());
    set_err(value, cap, s);
  });
}

// Leave the group and free it.
void lrlab_dist_destroy(void* h) {
  auto g = static_cast<Group*>(h);
  try {
    if (g->backend) g->backend->shutdown();
  } catch (...) {
  }
  delete g;
}
}
