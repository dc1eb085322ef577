// Signal handlers that only record the request.
#include "core/signals.hpp"

#include <csignal>
#include <initializer_list>

namespace turbine {

namespace {
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int signal) {
  g_signal = signal;
  if (signal == SIGINT) std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C kills
}
}  // namespace

void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signal : {SIGUSR1, SIGTERM, SIGINT}) sigaction(signal, &action, nullptr);
}

bool stop_requested() { return g_signal != 0; }
int stop_signal() { return g_signal; }

const char* stop_signal_name() {
  switch (g_signal) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "no signal";
  }
}

}  // namespace turbine
