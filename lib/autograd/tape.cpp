// The per-thread tape and the backward pass.
#include "autograd/tape.hpp"

#include <algorithm>
#include <span>
#include <unordered_map>

#include "core/error.hpp"

namespace turbine::autograd {

namespace {
struct Tape {
  std::vector<Node> nodes;
  bool enabled = true;
};
thread_local Tape g_tape;
}  // namespace

bool grad_enabled() { return g_tape.enabled; }

NoGradGuard::NoGradGuard() : previous_(g_tape.enabled) { g_tape.enabled = false; }
NoGradGuard::~NoGradGuard() { g_tape.enabled = previous_; }

namespace {
bool any_requires_grad(std::span<const Tensor* const> inputs) {
  if (!g_tape.enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->requires_grad()) return true;
  return false;
}
}  // namespace

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  return any_requires_grad({inputs.begin(), inputs.size()});
}
bool needs_grad(const std::vector<const Tensor*>& inputs) { return any_requires_grad(inputs); }

bool Node::any_output_grad() const {
  for (const auto& out : outputs_)
    if (out->grad.defined()) return true;
  return false;
}

void Node::release_outputs() {
  for (auto& out : outputs_) out->grad = Tensor();
}

namespace {
void record_node(std::span<const Tensor* const> inputs, std::initializer_list<Tensor*> outputs,
                 Node::Backward backward) {
  std::vector<std::shared_ptr<AutogradMeta>> in, out;
  for (const Tensor* t : inputs)
    in.push_back(t && t->defined() && t->requires_grad() ? t->autograd_meta() : nullptr);
  for (Tensor* t : outputs) {
    t->set_requires_grad(true);
    out.push_back(t->autograd_meta());
  }
  g_tape.nodes.emplace_back(std::move(in), std::move(out), std::move(backward));
}
}  // namespace

void record(std::initializer_list<const Tensor*> inputs, std::initializer_list<Tensor*> outputs,
            Node::Backward backward) {
  record_node({inputs.begin(), inputs.size()}, outputs, std::move(backward));
}
void record(const std::vector<const Tensor*>& inputs, std::initializer_list<Tensor*> outputs,
            Node::Backward backward) {
  record_node(inputs, outputs, std::move(backward));
}

void backward(const Tensor& loss, const Tensor& seed, const GradReadyWatch* watch) {
  TURBINE_CHECK(loss.requires_grad(),
                "backward: the loss {} does not depend on any tensor that requires grad",
                loss.str());
  if (seed.defined()) {
    TURBINE_CHECK(seed.shape() == loss.shape(), "backward: seed {} for loss {}", seed.str(),
                  loss.str());
    loss.set_grad(seed.clone());
  } else {
    loss.set_grad(Tensor::full(loss.shape(), 1.0f, loss.device()));
  }
  // A watched leaf is complete once its first user on the tape has run
  // (nodes run from the last recorded to the first).
  std::vector<std::vector<size_t>> ready_after(watch ? g_tape.nodes.size() : 0);
  std::vector<size_t> untouched;
  if (watch) {
    std::unordered_map<const AutogradMeta*, size_t> pending;
    for (size_t leaf = 0; leaf < watch->leaves.size(); ++leaf)
      pending.emplace(watch->leaves[leaf].get(), leaf);
    for (size_t i = 0; i < g_tape.nodes.size() && !pending.empty(); ++i)
      for (const auto& in : g_tape.nodes[i].inputs())
        if (auto it = pending.find(in.get()); in && it != pending.end()) {
          ready_after[i].push_back(it->second);
          pending.erase(it);
        }
    for (const auto& [meta, leaf] : pending) untouched.push_back(leaf);
    std::sort(untouched.begin(), untouched.end());
  }
  // Nodes run in reverse; each is destroyed right after, freeing what it saved.
  const bool was_enabled = g_tape.enabled;
  g_tape.enabled = false;
  try {
    while (!g_tape.nodes.empty()) {
      Node node = std::move(g_tape.nodes.back());
      g_tape.nodes.pop_back();
      if (node.any_output_grad()) node.run();
      node.release_outputs();
      if (watch)
        for (size_t leaf : ready_after[g_tape.nodes.size()]) watch->ready(leaf);
    }
    if (watch)
      for (size_t leaf : untouched) watch->ready(leaf);
  } catch (...) {
    g_tape.nodes.clear();
    g_tape.enabled = was_enabled;
    throw;
  }
  g_tape.enabled = was_enabled;
}

void clear_tape() { g_tape.nodes.clear(); }
size_t tape_size() { return g_tape.nodes.size(); }

}  // namespace turbine::autograd
