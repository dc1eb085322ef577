// Stop requests received by a watcher thread (see signals.hpp for why not a
// handler on the computing threads).
#include "core/signals.hpp"

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <thread>

namespace turbine {

namespace {
std::atomic<int> g_signal{0};

void record(int signal) {
  int none = 0;
  g_signal.compare_exchange_strong(none, signal);
}

// For threads that were started before install_stop_signals() and so do not
// block the signals: the request is still recorded rather than killing the
// process (the kernel may deliver a process-directed signal to any thread
// that does not block it).
extern "C" void on_stop_signal(int signal) { record(signal); }

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGUSR1, SIGTERM, SIGINT}) sigaddset(&set, signal);
  return set;
}

[[noreturn]] void watch(sigset_t set) {
  bool interrupted = false;
  for (;;) {
    int signal = 0;
    if (sigwait(&set, &signal) != 0) continue;
    if (signal == SIGINT && interrupted) {
      // A second Ctrl-C: die of it, as without the watcher.
      std::signal(SIGINT, SIG_DFL);
      sigset_t just_int;
      sigemptyset(&just_int);
      sigaddset(&just_int, SIGINT);
      pthread_sigmask(SIG_UNBLOCK, &just_int, nullptr);
      raise(SIGINT);
    }
    interrupted |= signal == SIGINT;
    record(signal);
  }
}
}  // namespace

void install_stop_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int signal : {SIGUSR1, SIGTERM, SIGINT}) sigaction(signal, &action, nullptr);
    const sigset_t set = stop_set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread(watch, set).detach();
  });
}

bool stop_requested() { return g_signal.load(std::memory_order_relaxed) != 0; }
int stop_signal() { return g_signal.load(std::memory_order_relaxed); }

const char* stop_signal_name() {
  switch (stop_signal()) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "no signal";
  }
}

}  // namespace turbine
