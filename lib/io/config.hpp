// The config layer every app uses: a schema of dotted keys (type, default, help, allowed values,
// bounds), a YAML file plus repeatable `--set dotted.key=value` overrides checked against it
// before any work starts, and typed access that remembers where each value came from.
//
//   ConfigSchema schema;
//   schema.integer("train_batch_size", 32, "global batch: micro x accumulation x ranks")
//       .at_least(1);
//   schema.integer("zero_optimization.stage", 0, "ZeRO sharding stage").one_of({0, 1, 2});
//   schema.numbers("optimizer.params.betas", {0.9, 0.999}, "AdamW moment decay rates");
//   const Config config = Config::load(path, schema, set_flags);
//   const int64_t batch = config.get<int64_t>("train_batch_size");
//
// Every problem (unknown key, wrong type, value not allowed or out of bounds, missing required
// key) is reported at once, in one Error with a line per problem naming the file and line (or
// the `--set` flag), the full dotted key and the fix.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace turbine::io {

// The kinds of value a key holds; `mapping` is a mapping whose children are free (e.g. `tags`).
enum class ConfigType {
  boolean,
  integer,
  number,
  string,
  integer_list,
  number_list,
  string_list,
  mapping
};

// A value, its alternatives in ConfigType's order; a `mapping` key holds a YAML::Node.
using ConfigValue = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>,
                                 std::vector<double>, std::vector<std::string>, YAML::Node>;

// "an integer", "a list of numbers", ...: the words error messages use for a type.
std::string config_type_name(ConfigType type);

class ConfigSchema {
 public:
  struct Key {
    std::string name;  // dotted: "optimizer.params.lr"; its parent mappings are implied
    ConfigType type;
    std::optional<ConfigValue> default_value;  // none: the key is required
    std::string help;                          // one line
    std::vector<ConfigValue> allowed;          // empty: any value of the type
    std::optional<double> min, max;            // for numbers and each item of numeric lists
  };

  // Refines the key just declared: schema.integer(...).one_of({0, 1, 2}).
  class KeyRef {
   public:
    KeyRef& one_of(std::vector<ConfigValue> values);
    KeyRef& at_least(double min);
    KeyRef& at_most(double max);

   private:
    friend class ConfigSchema;
    KeyRef(ConfigSchema& schema, size_t index) : schema_(schema), index_(index) {}
    KeyRef& bound(std::optional<double> min, std::optional<double> max);
    KeyRef& checked();  // the default obeys the key's rules
    ConfigSchema& schema_;
    size_t index_;
  };

  KeyRef boolean(const std::string& name, bool default_value, const std::string& help);
  KeyRef integer(const std::string& name, int64_t default_value, const std::string& help);
  KeyRef number(const std::string& name, double default_value, const std::string& help);
  KeyRef string(const std::string& name, const std::string& default_value, const std::string& help);
  KeyRef integers(const std::string& name, std::vector<int64_t> default_value,
                  const std::string& help);
  KeyRef numbers(const std::string& name, std::vector<double> default_value,
                 const std::string& help);
  KeyRef strings(const std::string& name, std::vector<std::string> default_value,
                 const std::string& help);
  // A mapping with free children (default empty): `tags: {team: nlp}`, `--set tags.team=nlp`.
  KeyRef mapping(const std::string& name, const std::string& help);
  // A key with no default: loading fails while neither the file nor a --set gives it.
  KeyRef required(const std::string& name, ConfigType type, const std::string& help);

  // Keys another tool defines (DeepSpeed's) that a config may carry, each with
  // everything below it. An `ignored` key means nothing here and is accepted:
  // loading lists it in Config::ignored() with the reason, and the job reports
  // it once. An `unsupported` key belongs to a feature Turbine lacks that would
  // change the run: giving one is an error that says so.
  void ignored(const std::string& name, const std::string& reason);
  void unsupported(const std::string& name, const std::string& reason);
  struct ForeignKey {
    std::string name, reason;
    bool unsupported = false;
  };
  // The foreign key that `name` is or lies below, or nullptr.
  const ForeignKey* foreign(const std::string& name) const;

  // In declaration order.
  const std::vector<Key>& keys() const { return keys_; }
  // The declared key of that name, or nullptr.
  const Key* find(const std::string& name) const;
  // Whether `name` is a mapping implied by declared keys below it ("optimizer").
  bool is_parent(const std::string& name) const;

 private:
  KeyRef add(Key key);
  void add_foreign(ForeignKey key);
  std::vector<Key> keys_;
  std::map<std::string, size_t> index_;
  std::map<std::string, ForeignKey> foreign_;
};

class Config {
 public:
  // `overrides` are "dotted.key=value" strings from --set flags, applied in order after the
  // file; the value is read as YAML, so `betas=[0.9,0.95]` is a list and `enabled=true` a bool.
  static Config load(const std::string& path, const ConfigSchema& schema,
                     const std::vector<std::string>& overrides = {});
  // The same for YAML text; `origin` names it in messages.
  static Config from_string(const std::string& yaml, const std::string& origin,
                            const ConfigSchema& schema,
                            const std::vector<std::string>& overrides = {});
  // The same for a parsed document whose marks give the lines.
  static Config from_yaml(const YAML::Node& root, const std::string& origin,
                          const ConfigSchema& schema,
                          const std::vector<std::string>& overrides = {});

  // T is the key's type: bool, int64_t, double, std::string, std::vector of int64_t, double or
  // std::string, or YAML::Node (a copy) for a mapping key.
  template <typename T>
  T get(const std::string& key) const;
  // Whether the file or a --set gave the key (false: it holds its default).
  bool has(const std::string& key) const;
  // "run.yaml:12", "--set key=value" or "default".
  std::string where(const std::string& key) const;
  // Throws an Error that starts with where the key's value came from; for checks across keys:
  // config.fail("train_batch_size", "train_batch_size 32 != ...: set ...").
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

  // Every declared key with its value, nested, in declaration order, each with its help as a
  // comment; loading it back with the same schema gives the same values.
  std::string to_yaml() const;

  const std::string& origin() const { return origin_; }
  const ConfigSchema& schema() const { return schema_; }

  // The ignored keys the file or a --set gave, in the order met.
  struct IgnoredKey {
    std::string key, where, reason;
  };
  const std::vector<IgnoredKey>& ignored() const { return ignored_; }

 private:
  enum class Source { default_value, file, override };
  struct Entry {
    ConfigValue value;
    Source source = Source::default_value;
    std::string where = "default";
  };
  class Loader;  // walks the file and the overrides into entries_

  Config(ConfigSchema schema, std::string origin);
  const ConfigValue& value(const std::string& key, ConfigType type) const;

  ConfigSchema schema_;
  std::string origin_;
  std::map<std::string, Entry> entries_;
  std::vector<IgnoredKey> ignored_;
};

// Reads a YAML file; errors name the file and, for syntax errors, the line.
YAML::Node read_yaml_file(const std::string& path);

namespace detail {
template <typename T>
constexpr ConfigType config_type_of() {
  if constexpr (std::is_same_v<T, bool>) {
    return ConfigType::boolean;
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return ConfigType::integer;
  } else if constexpr (std::is_same_v<T, double>) {
    return ConfigType::number;
  } else if constexpr (std::is_same_v<T, std::string>) {
    return ConfigType::string;
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    return ConfigType::integer_list;
  } else if constexpr (std::is_same_v<T, std::vector<double>>) {
    return ConfigType::number_list;
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    return ConfigType::string_list;
  } else {
    static_assert(std::is_same_v<T, YAML::Node>, "get<T>: T must be one of ConfigValue's types");
    return ConfigType::mapping;
  }
}
}  // namespace detail

template <typename T>
T Config::get(const std::string& key) const {
  const ConfigValue& v = value(key, detail::config_type_of<T>());
  if constexpr (std::is_same_v<T, YAML::Node>) {
    return YAML::Clone(std::get<YAML::Node>(v));
  } else {
    return std::get<T>(v);
  }
}

}  // namespace turbine::io
