// The config layer: schema declarations, the walk over a YAML document and --set overrides that
// collects every problem before throwing, typed access, and the resolved config as YAML.
#include "io/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.hpp"

namespace turbine::io {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string parent_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

std::string last_of(const std::string& name) {
  return name.substr(name.rfind('.') + 1);
}

std::string join(const std::string& prefix, const std::string& child) {
  return prefix.empty() ? child : prefix + "." + child;
}

std::vector<std::string> split(const std::string& name) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t dot; (dot = name.find('.', begin)) != std::string::npos; begin = dot + 1) {
    parts.push_back(name.substr(begin, dot - begin));
  }
  parts.push_back(name.substr(begin));
  return parts;
}

// "learning_rate" -> "lr"; empty for a single word.
std::string initials(const std::string& word) {
  if (word.find('_') == std::string::npos) return "";
  std::string out;
  for (size_t i = 0; i < word.size(); ++i) {
    if (word[i] != '_' && (i == 0 || word[i - 1] == '_')) out += word[i];
  }
  return out;
}

// The candidate nearest to `name` (a dotted key or a plain word), or "" when none is near: the
// smallest edit distance, where a candidate whose last component equals the name's or
// abbreviates it (`lr` for `learning_rate`) counts as 1; ties go to the smaller distance of
// the whole names, then to the first declared.
std::string closest(const std::string& name, const std::vector<std::string>& candidates) {
  const std::string last = last_of(name);
  std::string best;
  std::pair<size_t, size_t> best_score{SIZE_MAX, SIZE_MAX};
  for (const std::string& candidate : candidates) {
    const size_t whole = edit_distance(name, candidate);
    const std::string other = last_of(candidate);
    const bool same_word = other == last || initials(last) == other || initials(other) == last;
    const std::pair<size_t, size_t> score{same_word ? std::min<size_t>(whole, 1) : whole, whole};
    if (score < best_score) {
      best_score = score;
      best = candidate;
    }
  }
  return best_score.first <= std::max<size_t>(2, last.size() / 3) ? best : std::string();
}

std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return fmt::format("'{}'", node.Scalar());
}

std::string number_text(double v) {
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  std::string text = fmt::format("{}", v);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

template <typename T>
std::string list_text(const std::vector<T>& items) {
  std::vector<std::string> texts;
  for (const T& item : items) {
    if constexpr (std::is_same_v<T, double>) {
      texts.push_back(number_text(item));
    } else {
      texts.push_back(fmt::format("{}", item));
    }
  }
  return fmt::format("[{}]", fmt::join(texts, ", "));
}

// How a value reads in messages: 32, 0.001, true, WarmupLR, [0.9, 0.999].
std::string value_text(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return number_text(v);
        } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, std::string>) {
          return fmt::format("{}", v);
        } else if constexpr (std::is_same_v<T, YAML::Node>) {
          YAML::Emitter out;
          out << YAML::Flow << v;
          return out.c_str();
        } else {
          return list_text(v);
        }
      },
      value);
}

// Reads a scalar as T; nullopt where it is not one (NaN is not a number here).
// An integer may be written as a number with an integral value, as JSON
// configs of DeepSpeed write sizes ("reduce_bucket_size": 5e8).
template <typename T>
std::optional<T> scalar_as(const YAML::Node& node) {
  T value;
  if (!node.IsScalar()) return std::nullopt;
  if (YAML::convert<T>::decode(node, value)) {
    if constexpr (std::is_same_v<T, double>) {
      if (std::isnan(value)) return std::nullopt;
    }
    return value;
  }
  if constexpr (std::is_same_v<T, int64_t>) {
    double number = 0;
    if (YAML::convert<double>::decode(node, number) && std::isfinite(number) &&
        number == std::floor(number) && std::abs(number) < 9.2e18)
      return static_cast<int64_t>(number);
  }
  return std::nullopt;
}

// A string that a plain YAML scalar would turn into something else (true, 12, ~) is quoted.
bool needs_quotes(const std::string& text) {
  if (text.empty()) return true;
  YAML::Node plain;
  try {
    plain = YAML::Load(text);
  } catch (const YAML::Exception&) {
    return true;  // not even valid YAML unquoted ("\2...)
  }
  return !plain.IsScalar() || scalar_as<bool>(plain) || scalar_as<double>(plain);
}

void emit_value(YAML::Emitter& out, const ConfigValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (needs_quotes(v)) out << YAML::DoubleQuoted;
          out << v;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          out << YAML::Flow << YAML::BeginSeq;
          for (const std::string& item : v) {
            if (needs_quotes(item)) out << YAML::DoubleQuoted;
            out << item;
          }
          out << YAML::EndSeq;
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>> ||
                             std::is_same_v<T, std::vector<double>>) {
          out << YAML::Flow << YAML::BeginSeq;
          for (const auto item : v) out << value_text(item);
          out << YAML::EndSeq;
        } else if constexpr (std::is_same_v<T, YAML::Node>) {
          // Flow style keeps the help comment on the key's own line.
          out << YAML::Flow << v;
        } else {
          out << value_text(v);
        }
      },
      value);
}

}  // namespace

std::string config_type_name(ConfigType type) {
  // In ConfigType's order.
  static const char* const names[] = {
      "a boolean (true or false)", "an integer",        "a number",          "a string",
      "a list of integers",        "a list of numbers", "a list of strings", "a mapping"};
  return names[static_cast<size_t>(type)];
}

// ---------------------------------------------------------------------------------------------
// Schema

namespace {

ConfigType item_type(ConfigType list) {
  if (list == ConfigType::integer_list) return ConfigType::integer;
  if (list == ConfigType::number_list) return ConfigType::number;
  return ConfigType::string;
}

bool is_numeric(ConfigType type) {
  return type == ConfigType::integer || type == ConfigType::number ||
         type == ConfigType::integer_list || type == ConfigType::number_list;
}

// What is wrong with a well-typed value under the key's allowed values and bounds, or "".
std::string rule_problem(const ConfigSchema::Key& key, const ConfigValue& value) {
  if (!key.allowed.empty() &&
      std::find(key.allowed.begin(), key.allowed.end(), value) == key.allowed.end()) {
    std::vector<std::string> names;
    for (const ConfigValue& allowed : key.allowed) names.push_back(value_text(allowed));
    const auto* text_value = std::get_if<std::string>(&value);
    std::string text =
        fmt::format("{} is {}, which is not allowed: use {}{}", key.name,
                    text_value ? fmt::format("'{}'", *text_value) : value_text(value),
                    names.size() > 1 ? "one of " : "", fmt::join(names, ", "));
    if (const std::string near = closest(value_text(value), names); !near.empty()) {
      text += fmt::format(" (did you mean {}?)", near);
    }
    return text;
  }
  std::vector<double> numbers;
  if (const auto* i = std::get_if<int64_t>(&value)) numbers.push_back(static_cast<double>(*i));
  if (const auto* d = std::get_if<double>(&value)) numbers.push_back(*d);
  if (const auto* is = std::get_if<std::vector<int64_t>>(&value)) {
    numbers.insert(numbers.end(), is->begin(), is->end());
  }
  if (const auto* ds = std::get_if<std::vector<double>>(&value)) {
    numbers.insert(numbers.end(), ds->begin(), ds->end());
  }
  for (const double v : numbers) {
    if ((key.min && v < *key.min) || (key.max && v > *key.max)) {
      const std::string range = key.min && key.max ? fmt::format("in [{}, {}]", *key.min, *key.max)
                                : key.min          ? fmt::format(">= {}", *key.min)
                                                   : fmt::format("<= {}", *key.max);
      return fmt::format("{} is {}: use {} {}", key.name, value_text(value),
                         numbers.size() > 1 ? "values" : "a value", range);
    }
  }
  return "";
}

}  // namespace

ConfigSchema::KeyRef& ConfigSchema::KeyRef::one_of(std::vector<ConfigValue> values) {
  Key& key = schema_.keys_[index_];
  for (const ConfigValue& v : values) {
    TURBINE_CHECK(v.index() == static_cast<size_t>(key.type),
                  "schema: allowed value {} of {} is not {}", value_text(v), key.name,
                  config_type_name(key.type));
  }
  key.allowed = std::move(values);
  return checked();
}

ConfigSchema::KeyRef& ConfigSchema::KeyRef::at_least(double min) {
  return bound(min, {});
}

ConfigSchema::KeyRef& ConfigSchema::KeyRef::at_most(double max) {
  return bound({}, max);
}

ConfigSchema::KeyRef& ConfigSchema::KeyRef::bound(std::optional<double> min,
                                                  std::optional<double> max) {
  Key& key = schema_.keys_[index_];
  TURBINE_CHECK(is_numeric(key.type), "schema: {} is {}, so it has no bounds", key.name,
                config_type_name(key.type));
  if (min) key.min = min;
  if (max) key.max = max;
  return checked();
}

ConfigSchema::KeyRef& ConfigSchema::KeyRef::checked() {
  const Key& key = schema_.keys_[index_];
  if (key.default_value) {
    const std::string problem = rule_problem(key, *key.default_value);
    TURBINE_CHECK(problem.empty(), "schema: the default breaks its own rule: {}", problem);
  }
  return *this;
}

ConfigSchema::KeyRef ConfigSchema::add(Key key) {
  const std::vector<std::string> parts = split(key.name);
  TURBINE_CHECK(std::none_of(parts.begin(), parts.end(), [](auto& p) { return p.empty(); }),
                "schema: key '{}' has an empty component", key.name);
  TURBINE_CHECK(!index_.count(key.name) && !is_parent(key.name), "schema: key {} is declared twice",
                key.name);
  for (std::string up = parent_of(key.name); !up.empty(); up = parent_of(up)) {
    TURBINE_CHECK(!index_.count(up), "schema: {} lies below key {}, which is {}", key.name, up,
                  config_type_name(keys_[index_.at(up)].type));
  }
  TURBINE_CHECK(!foreign(key.name), "schema: key {} is also declared foreign", key.name);
  index_[key.name] = keys_.size();
  keys_.push_back(std::move(key));
  return KeyRef(*this, keys_.size() - 1);
}

ConfigSchema::KeyRef ConfigSchema::boolean(const std::string& name, bool default_value,
                                           const std::string& help) {
  return add({name, ConfigType::boolean, default_value, help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::integer(const std::string& name, int64_t default_value,
                                           const std::string& help) {
  return add({name, ConfigType::integer, default_value, help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::number(const std::string& name, double default_value,
                                          const std::string& help) {
  return add({name, ConfigType::number, default_value, help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::string(const std::string& name, const std::string& default_value,
                                          const std::string& help) {
  return add({name, ConfigType::string, default_value, help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::integers(const std::string& name,
                                            std::vector<int64_t> default_value,
                                            const std::string& help) {
  return add({name, ConfigType::integer_list, std::move(default_value), help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::numbers(const std::string& name,
                                           std::vector<double> default_value,
                                           const std::string& help) {
  return add({name, ConfigType::number_list, std::move(default_value), help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::strings(const std::string& name,
                                           std::vector<std::string> default_value,
                                           const std::string& help) {
  return add({name, ConfigType::string_list, std::move(default_value), help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::mapping(const std::string& name, const std::string& help) {
  return add({name, ConfigType::mapping, YAML::Node(YAML::NodeType::Map), help, {}, {}, {}});
}

ConfigSchema::KeyRef ConfigSchema::required(const std::string& name, ConfigType type,
                                            const std::string& help) {
  return add({name, type, std::nullopt, help, {}, {}, {}});
}

void ConfigSchema::ignored(const std::string& name, const std::string& reason) {
  add_foreign({name, reason, false});
}

void ConfigSchema::unsupported(const std::string& name, const std::string& reason) {
  add_foreign({name, reason, true});
}

void ConfigSchema::add_foreign(ForeignKey key) {
  TURBINE_CHECK(!find(key.name) && !foreign_.count(key.name), "schema: key {} is declared twice",
                key.name);
  for (std::string up = parent_of(key.name); !up.empty(); up = parent_of(up)) {
    TURBINE_CHECK(!find(up) && !foreign_.count(up), "schema: {} lies below key {}", key.name, up);
  }
  foreign_[key.name] = std::move(key);
}

const ConfigSchema::ForeignKey* ConfigSchema::foreign(const std::string& name) const {
  for (std::string up = name; !up.empty(); up = parent_of(up)) {
    if (const auto it = foreign_.find(up); it != foreign_.end()) return &it->second;
  }
  return nullptr;
}

const ConfigSchema::Key* ConfigSchema::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &keys_[it->second];
}

bool ConfigSchema::is_parent(const std::string& name) const {
  const std::string prefix = name + ".";
  return std::any_of(keys_.begin(), keys_.end(),
                     [&](const Key& key) { return key.name.starts_with(prefix); });
}

// ---------------------------------------------------------------------------------------------
// Loading

// Walks the document and then each override into the entries, collecting every problem.
class Config::Loader {
 public:
  explicit Loader(Config& config) : config_(config), schema_(config.schema_) {}

  void file(const YAML::Node& root) {
    visit("", root, {Source::file, ""}, YAML::Mark::null_mark());
  }

  void override_flag(const std::string& flag) {
    const Origin from{Source::override, "--set " + flag};
    const size_t eq = flag.find('=');
    if (eq == std::string::npos) {
      return problem(from, {}, "expected --set dotted.key=value");
    }
    const std::string key = flag.substr(0, eq);
    const std::vector<std::string> parts = split(key);
    if (std::any_of(parts.begin(), parts.end(), [](auto& p) { return p.empty(); })) {
      return problem(from, {},
                     fmt::format("'{}' is not a dotted key like optimizer.params.lr", key));
    }
    YAML::Node value;
    try {
      value = YAML::Load(flag.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      return problem(from, {}, fmt::format("the value is not valid YAML ({}): quote it", e.msg));
    }
    visit(key, value, from, YAML::Mark::null_mark());
  }

  // Throws every problem found, the missing required keys among them.
  void finish() {
    for (const ConfigSchema::Key& key : schema_.keys()) {
      if (config_.entries_.count(key.name)) continue;
      problems_.push_back(
          fmt::format("{}: missing required key {} ({}): add it to the file or pass --set {}=VALUE",
                      config_.origin_, key.name, key.help, key.name));
    }
    if (problems_.size() == 1) TURBINE_FAIL("{}", problems_[0]);
    if (problems_.size() > 1) {
      TURBINE_FAIL("{} problems in config {}:\n  {}", problems_.size(), config_.origin_,
                   fmt::join(problems_, "\n  "));
    }
  }

 private:
  struct Origin {
    Source source;
    std::string flag;  // "--set key=value" for an override
  };

  std::string location(const Origin& from, const YAML::Mark& mark) const {
    if (from.source == Source::override) return from.flag;
    if (mark.is_null()) return config_.origin_;
    return fmt::format("{}:{}", config_.origin_, mark.line + 1);
  }

  void problem(const Origin& from, const YAML::Mark& mark, const std::string& text) {
    problems_.push_back(fmt::format("{}: {}", location(from, mark), text));
  }

  // `mark` is the key's, so a value on the following lines is reported at its key.
  void visit(const std::string& path, const YAML::Node& node, const Origin& from, YAML::Mark mark) {
    if (mark.is_null()) mark = node.Mark();
    if (const ConfigSchema::Key* key = schema_.find(path)) return set(*key, node, from, mark);
    if (const ConfigSchema::ForeignKey* foreign = schema_.foreign(path)) {
      if (foreign->unsupported)
        return problem(from, mark, fmt::format("{}: {}", path, foreign->reason));
      config_.ignored_.push_back({path, location(from, mark), foreign->reason});
      return;
    }
    if (path.empty() || schema_.is_parent(path)) {
      if (node.IsNull()) return;
      if (!node.IsMap()) {
        return problem(from, mark,
                       fmt::format("{}: expected a mapping, got {}",
                                   path.empty() ? "the config" : path, describe(node)));
      }
      for (const auto& item : node) {
        if (!item.first.IsScalar()) {
          problem(from, item.first.Mark(),
                  fmt::format("a key below {} is not a name", path.empty() ? "the top" : path));
          continue;
        }
        visit(join(path, item.first.Scalar()), item.second, from, item.first.Mark());
      }
      return;
    }
    for (std::string up = parent_of(path); !up.empty(); up = parent_of(up)) {
      const ConfigSchema::Key* key = schema_.find(up);
      if (key && key->type == ConfigType::mapping) {
        return set_below_mapping(up, path.substr(up.size() + 1), node, from);
      }
      if (key) {
        return problem(
            from, mark,
            fmt::format("{} is {}, so it has no key {}", up, config_type_name(key->type), path));
      }
    }
    unknown(path, from, mark);
  }

  void unknown(const std::string& path, const Origin& from, const YAML::Mark& mark) {
    std::vector<std::string> names;
    for (const ConfigSchema::Key& key : schema_.keys()) {
      for (std::string up = parent_of(key.name); !up.empty(); up = parent_of(up)) {
        if (std::find(names.begin(), names.end(), up) == names.end()) names.push_back(up);
      }
      names.push_back(key.name);
    }
    const std::string parent = parent_of(path);
    std::string fix;
    if (const std::string near = closest(path, names); !near.empty()) {
      // In a file the reader sees the mapping: name a sibling by its own name.
      const bool sibling = from.source == Source::file && parent_of(near) == parent;
      fix = fmt::format("did you mean {}?", sibling ? last_of(near) : near);
    } else if (!parent.empty()) {
      std::vector<std::string> siblings;
      for (const std::string& name : names) {
        if (parent_of(name) == parent) siblings.push_back(last_of(name));
      }
      fix = fmt::format("the keys of {} are {}", parent, fmt::join(siblings, ", "));
    } else {
      fix = "remove it (--dry-run prints every key)";
    }
    problem(from, mark, fmt::format("unknown key {}: {}", path, fix));
  }

  void set(const ConfigSchema::Key& key, const YAML::Node& node, const Origin& from,
           const YAML::Mark& mark) {
    std::optional<ConfigValue> value = convert(key, node, from, mark);
    if (!value) return;
    if (const std::string rule = rule_problem(key, *value); !rule.empty()) {
      return problem(from, mark, rule);
    }
    Entry& entry = config_.entries_[key.name];
    if (from.source == Source::file && entry.source == Source::file) {
      return problem(
          from, mark,
          fmt::format("{} is given twice (first at {}): keep one", key.name, entry.where));
    }
    entry = {std::move(*value), from.source, location(from, mark)};
  }

  // `--set tags.team=nlp`: a child of a mapping key.
  void set_below_mapping(const std::string& name, const std::string& rest, const YAML::Node& node,
                         const Origin& from) {
    Entry& entry = config_.entries_[name];
    if (!std::holds_alternative<YAML::Node>(entry.value)) {
      entry.value = YAML::Node(YAML::NodeType::Map);  // a required mapping not given yet
    }
    YAML::Node parent = std::get<YAML::Node>(entry.value);
    const std::vector<std::string> parts = split(rest);
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      if (!parent[parts[i]].IsMap()) parent[parts[i]] = YAML::Node(YAML::NodeType::Map);
      parent.reset(parent[parts[i]]);
    }
    parent[parts.back()] = node;
    entry.source = from.source;
    entry.where = from.flag;
  }

  template <typename T>
  std::optional<ConfigValue> scalar(const ConfigSchema::Key& key, const YAML::Node& node,
                                    const Origin& from, const YAML::Mark& mark) {
    if (std::optional<T> v = scalar_as<T>(node)) return ConfigValue(std::move(*v));
    problem(from, mark,
            fmt::format("{}: expected {}, got {}", key.name, config_type_name(key.type),
                        describe(node)));
    return std::nullopt;
  }

  template <typename T>
  std::optional<ConfigValue> list(const ConfigSchema::Key& key, const YAML::Node& node,
                                  const Origin& from, const YAML::Mark& mark) {
    if (!node.IsSequence()) {
      problem(from, mark,
              fmt::format("{}: expected {} like [a, b], got {}", key.name,
                          config_type_name(key.type), describe(node)));
      return std::nullopt;
    }
    std::vector<T> items;
    bool ok = true;
    for (size_t i = 0; i < node.size(); ++i) {
      if (std::optional<T> v = scalar_as<T>(node[i])) {
        items.push_back(std::move(*v));
        continue;
      }
      ok = false;
      const YAML::Mark item_mark = node[i].Mark().is_null() ? mark : node[i].Mark();
      problem(from, item_mark,
              fmt::format("{}[{}]: expected {}, got {}", key.name, i,
                          config_type_name(item_type(key.type)), describe(node[i])));
    }
    if (!ok) return std::nullopt;
    return ConfigValue(std::move(items));
  }

  std::optional<ConfigValue> convert(const ConfigSchema::Key& key, const YAML::Node& node,
                                     const Origin& from, const YAML::Mark& mark) {
    switch (key.type) {
      case ConfigType::boolean:
        return scalar<bool>(key, node, from, mark);
      case ConfigType::integer:
        return scalar<int64_t>(key, node, from, mark);
      case ConfigType::number:
        return scalar<double>(key, node, from, mark);
      case ConfigType::string:
        return scalar<std::string>(key, node, from, mark);
      case ConfigType::integer_list:
        return list<int64_t>(key, node, from, mark);
      case ConfigType::number_list:
        return list<double>(key, node, from, mark);
      case ConfigType::string_list:
        return list<std::string>(key, node, from, mark);
      case ConfigType::mapping:
        if (node.IsNull()) return ConfigValue(YAML::Node(YAML::NodeType::Map));
        if (node.IsMap()) return ConfigValue(YAML::Clone(node));
        problem(from, mark,
                fmt::format("{}: expected a mapping, got {}", key.name, describe(node)));
        return std::nullopt;
    }
    return std::nullopt;
  }

  Config& config_;
  const ConfigSchema& schema_;
  std::vector<std::string> problems_;
};

Config::Config(ConfigSchema schema, std::string origin)
    : schema_(std::move(schema)), origin_(std::move(origin)) {
  for (const ConfigSchema::Key& key : schema_.keys()) {
    if (!key.default_value) continue;
    // A mapping's default is copied so that --set into it leaves the schema alone.
    const auto* node = std::get_if<YAML::Node>(&*key.default_value);
    entries_[key.name].value = node ? ConfigValue(YAML::Clone(*node)) : *key.default_value;
  }
}

Config Config::from_yaml(const YAML::Node& root, const std::string& origin,
                         const ConfigSchema& schema, const std::vector<std::string>& overrides) {
  Config config(schema, origin);
  Loader loader(config);
  loader.file(root);
  for (const std::string& flag : overrides) loader.override_flag(flag);
  loader.finish();
  return config;
}

namespace {
YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    TURBINE_FAIL("{}:{}: YAML syntax error: {}", origin, e.mark.line + 1, e.msg);
  }
}
}  // namespace

Config Config::from_string(const std::string& yaml, const std::string& origin,
                           const ConfigSchema& schema, const std::vector<std::string>& overrides) {
  return from_yaml(parse_yaml(yaml, origin), origin, schema, overrides);
}

Config Config::load(const std::string& path, const ConfigSchema& schema,
                    const std::vector<std::string>& overrides) {
  // No file: the schema's defaults and the overrides only.
  if (path.empty()) return from_yaml(YAML::Node(YAML::NodeType::Map), "(--set)", schema, overrides);
  return from_yaml(read_yaml_file(path), path, schema, overrides);
}

YAML::Node read_yaml_file(const std::string& path) {
  std::error_code ec;
  TURBINE_CHECK(std::filesystem::exists(path, ec),
                "config file '{}' does not exist: check the path", path);
  TURBINE_CHECK(!std::filesystem::is_directory(path, ec),
                "config file '{}' is a directory: name a YAML file", path);
  std::ifstream in(path);
  TURBINE_CHECK(in.is_open(), "config file '{}' cannot be read: {}", path, std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TURBINE_CHECK(!in.bad(), "config file '{}' cannot be read: {}", path, std::strerror(errno));
  return parse_yaml(text, path);
}

// ---------------------------------------------------------------------------------------------
// Access

const ConfigValue& Config::value(const std::string& key, ConfigType type) const {
  const ConfigSchema::Key* declared = schema_.find(key);
  if (declared == nullptr) {
    std::vector<std::string> names;
    for (const ConfigSchema::Key& k : schema_.keys()) names.push_back(k.name);
    const std::string near = closest(key, names);
    TURBINE_FAIL("config key {} is not in the schema{}", key,
                 near.empty() ? "" : fmt::format(" (did you mean {}?)", near));
  }
  TURBINE_CHECK(declared->type == type, "config key {} is {}, not {}: read it as such", key,
                config_type_name(declared->type), config_type_name(type));
  return entries_.at(key).value;
}

bool Config::has(const std::string& key) const {
  TURBINE_CHECK(schema_.find(key), "config key {} is not in the schema", key);
  return entries_.at(key).source != Source::default_value;
}

std::string Config::where(const std::string& key) const {
  TURBINE_CHECK(schema_.find(key), "config key {} is not in the schema", key);
  return entries_.at(key).where;
}

void Config::fail(const std::string& key, const std::string& message) const {
  TURBINE_CHECK(schema_.find(key), "config key {} is not in the schema", key);
  const Entry& entry = entries_.at(key);
  if (entry.source == Source::default_value) {
    TURBINE_FAIL("{} (default {}={}): {}", origin_, key, value_text(entry.value), message);
  }
  TURBINE_FAIL("{}: {}", entry.where, message);
}

std::string Config::to_yaml() const {
  // Emits the mapping at `prefix`: its children in the order their first key was declared.
  const auto emit = [&](const auto& self, YAML::Emitter& out, const std::string& prefix) -> void {
    std::vector<std::string> children;
    for (const ConfigSchema::Key& key : schema_.keys()) {
      if (!prefix.empty() && !key.name.starts_with(prefix + ".")) continue;
      const std::string rest = prefix.empty() ? key.name : key.name.substr(prefix.size() + 1);
      const std::string child = rest.substr(0, rest.find('.'));
      if (std::find(children.begin(), children.end(), child) == children.end()) {
        children.push_back(child);
      }
    }
    out << YAML::BeginMap;
    for (const std::string& child : children) {
      const std::string path = join(prefix, child);
      out << YAML::Key << child << YAML::Value;
      if (const ConfigSchema::Key* key = schema_.find(path)) {
        emit_value(out, entries_.at(path).value);
        if (!key->help.empty()) out << YAML::Comment(key->help);
      } else {
        self(self, out, path);
      }
    }
    out << YAML::EndMap;
  };
  YAML::Emitter out;
  emit(emit, out, "");
  return std::string(out.c_str()) + "\n";
}

}  // namespace turbine::io
