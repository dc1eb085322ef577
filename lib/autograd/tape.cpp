// The per-thread tape and the backward pass over the subgraph of one loss.
#include "autograd/tape.hpp"

#include <algorithm>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "core/error.hpp"

namespace turbine::autograd {

namespace {
struct Tape {
  std::vector<Node> nodes;
  bool enabled = true;
  // Outputs of nodes that ran in a backward while other nodes stayed on the
  // tape (to refuse a later backward through them); emptied with the tape.
  std::unordered_map<const AutogradMeta*, std::weak_ptr<AutogradMeta>> consumed;
};
thread_local Tape g_tape;
}  // namespace

bool grad_enabled() { return g_tape.enabled; }

NoGradGuard::NoGradGuard() : previous_(g_tape.enabled) { g_tape.enabled = false; }
NoGradGuard::~NoGradGuard() { g_tape.enabled = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(g_tape.enabled) { g_tape.enabled = true; }
EnableGradGuard::~EnableGradGuard() { g_tape.enabled = previous_; }

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
bool needs_grad(const std::vector<const Tensor*>& inputs) {
  return any_requires_grad(inputs);
}

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

namespace {

// The tape's nodes on which `loss` depends, in recording order. One pass from
// the last node back suffices: a node is recorded after the nodes that
// produced its inputs. `unproduced` receives the tensors the subgraph needs
// that no node on the tape produces (leaves, or outputs of nodes that ran).
std::vector<size_t> subgraph_of(const AutogradMeta* loss,
                                std::unordered_set<const AutogradMeta*>* unproduced) {
  std::unordered_set<const AutogradMeta*> wanted{loss}, produced;
  std::vector<size_t> nodes;
  for (size_t i = g_tape.nodes.size(); i-- > 0;) {
    const Node& node = g_tape.nodes[i];
    const auto& outs = node.outputs();
    if (std::none_of(outs.begin(), outs.end(),
                     [&](const auto& o) { return wanted.count(o.get()); }))
      continue;
    nodes.push_back(i);
    for (const auto& out : outs) produced.insert(out.get());
    for (const auto& in : node.inputs())
      if (in) wanted.insert(in.get());
  }
  for (const AutogradMeta* meta : wanted)
    if (!produced.count(meta)) unproduced->insert(meta);
  std::reverse(nodes.begin(), nodes.end());
  return nodes;
}

}  // namespace

void backward(const Tensor& loss, const Tensor& seed, const GradReadyWatch* watch) {
  TURBINE_CHECK(loss.requires_grad(),
                "backward: the loss {} does not depend on any tensor that requires grad",
                loss.str());
  std::unordered_set<const AutogradMeta*> unproduced;
  const std::vector<size_t> subgraph = subgraph_of(loss.autograd_meta().get(), &unproduced);
  // A tensor whose producing node already ran for another loss: its part of
  // the graph is gone, and running on would silently drop gradients.
  for (const AutogradMeta* meta : unproduced) {
    const auto it = g_tape.consumed.find(meta);
    TURBINE_CHECK(it == g_tape.consumed.end() || it->second.expired(),
                  "backward: the loss {} depends on a part of the graph that an earlier "
                  "backward already ran and released (shared by two losses, or the same loss "
                  "twice); add the losses and call backward once",
                  loss.str());
  }
  if (seed.defined()) {
    TURBINE_CHECK(seed.shape() == loss.shape(), "backward: seed {} for loss {}", seed.str(),
                  loss.str());
    loss.set_grad(seed.clone());
  } else {
    loss.set_grad(Tensor::full(loss.shape(), 1.0f, loss.device()));
  }
  // A watched leaf is complete once its first user in the subgraph has run
  // (nodes run from the last recorded to the first).
  std::vector<std::vector<size_t>> ready_after(watch ? subgraph.size() : 0);
  std::vector<size_t> untouched;
  if (watch) {
    std::unordered_map<const AutogradMeta*, size_t> pending;
    for (size_t leaf = 0; leaf < watch->leaves.size(); ++leaf)
      pending.emplace(watch->leaves[leaf].get(), leaf);
    for (size_t k = 0; k < subgraph.size() && !pending.empty(); ++k)
      for (const auto& in : g_tape.nodes[subgraph[k]].inputs())
        if (auto it = pending.find(in.get()); in && it != pending.end()) {
          ready_after[k].push_back(it->second);
          pending.erase(it);
        }
    for (const auto& [meta, leaf] : pending) untouched.push_back(leaf);
    std::sort(untouched.begin(), untouched.end());
  }
  // Nodes run in reverse; each is destroyed right after, freeing what it
  // saved, and its outputs are remembered as consumed while other nodes stay.
  const bool was_enabled = g_tape.enabled;
  g_tape.enabled = false;
  try {
    std::vector<std::weak_ptr<AutogradMeta>> ran_outputs;
    for (size_t k = subgraph.size(); k-- > 0;) {
      Node node = std::move(g_tape.nodes[subgraph[k]]);
      if (node.any_output_grad()) node.run();
      node.release_outputs();
      for (const auto& out : node.outputs()) ran_outputs.push_back(out);
      if (watch)
        for (size_t leaf : ready_after[k]) watch->ready(leaf);
    }
    if (watch)
      for (size_t leaf : untouched) watch->ready(leaf);
    // Drop the moved-from nodes; the others keep their order.
    std::vector<bool> ran(g_tape.nodes.size(), false);
    for (size_t i : subgraph) ran[i] = true;
    size_t kept = 0;
    for (size_t i = 0; i < g_tape.nodes.size(); ++i)
      if (!ran[i]) {
        if (kept != i) g_tape.nodes[kept] = std::move(g_tape.nodes[i]);
        ++kept;
      }
    g_tape.nodes.erase(g_tape.nodes.begin() + kept, g_tape.nodes.end());
    if (g_tape.nodes.empty()) {
      g_tape.consumed.clear();
    } else {
      for (auto& out : ran_outputs)
        if (auto alive = out.lock()) g_tape.consumed[alive.get()] = out;
    }
  } catch (...) {
    clear_tape();
    g_tape.enabled = was_enabled;
    throw;
  }
  g_tape.enabled = was_enabled;
}

void clear_tape() {
  g_tape.nodes.clear();
  g_tape.consumed.clear();
}
size_t tape_size() { return g_tape.nodes.size(); }

}  // namespace turbine::autograd
