// Multi-modal causal attention (DeepSpeed-VisualChat, Yao et al. 2023): two
// masked causal attentions summed, one over text keys and one over image keys.
#include <vector>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

namespace {

// Checks one row's kinds: -1, 0 or an image number, each image's tokens in
// one run.
void check_kinds(std::span<const int32_t> row, int64_t b) {
  int32_t open = 0;  // the image whose run the previous position belongs to
  std::vector<int32_t> closed;
  for (size_t j = 0; j < row.size(); ++j) {
    const int32_t kind = row[j];
    TURBINE_CHECK(kind >= kPaddingToken,
                  "mmca: position {} of row {} has kind {} (text 0, padding -1, images 1, 2, ...)",
                  j, b, kind);
    if (kind > 0 && kind != open) {
      for (const int32_t c : closed)
        TURBINE_CHECK(c != kind, "mmca: image {} of row {} is split (again at position {})", kind,
                      b, j);
    }
    if (open > 0 && kind != open) closed.push_back(open);
    open = kind > 0 ? kind : 0;
  }
}

void check_sizes(std::span<const int32_t> kinds, int64_t batch, int64_t keys, int64_t queries) {
  TURBINE_CHECK(batch > 0 && keys > 0 && queries > 0 && queries <= keys &&
                    int64_t(kinds.size()) == batch * keys,
                "mmca: {} kinds for {} rows of {} keys with {} queries", kinds.size(), batch, keys,
                queries);
}

}  // namespace

MmcaMasks mmca_masks(std::span<const int32_t> kinds, int64_t batch, int64_t keys, int64_t queries,
                     Device device) {
  check_sizes(kinds, batch, keys, queries);
  std::vector<uint8_t> text(size_t(batch * queries * keys), 0), image(text.size(), 0);
  for (int64_t b = 0; b < batch; ++b) {
    const std::span<const int32_t> row = kinds.subspan(size_t(b * keys), size_t(keys));
    check_kinds(row, b);
    for (int64_t i = 0; i < queries; ++i) {
      const int64_t p = keys - queries + i;  // the query's position
      const int32_t own = row[size_t(p)];
      uint8_t* t = text.data() + (b * queries + i) * keys;
      uint8_t* m = image.data() + (b * queries + i) * keys;
      if (own == kTextToken) {
        for (int64_t j = 0; j <= p; ++j) {
          t[j] = row[size_t(j)] == kTextToken;
          m[j] = row[size_t(j)] > 0;
        }
      } else if (own > 0) {
        for (int64_t j = 0; j <= p; ++j) m[j] = row[size_t(j)] == own;
      }  // padding queries see nothing: zeros out
    }
  }
  const Shape shape{batch, queries, keys};
  return {Tensor::from_vector<uint8_t>(shape, text, device),
          Tensor::from_vector<uint8_t>(shape, image, device)};
}

Tensor padding_mask(std::span<const int32_t> kinds, int64_t batch, int64_t keys, int64_t queries,
                    Device device) {
  check_sizes(kinds, batch, keys, queries);
  bool any = false;
  for (const int32_t kind : kinds) any |= kind == kPaddingToken;
  if (!any) return Tensor();
  std::vector<uint8_t> mask(size_t(batch * queries * keys));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < queries; ++i)
      for (int64_t j = 0; j < keys; ++j)
        mask[size_t((b * queries + i) * keys + j)] = kinds[size_t(b * keys + j)] != kPaddingToken;
  return Tensor::from_vector<uint8_t>({batch, queries, keys}, mask, device);
}

Tensor mmca_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionOptions& options, const MmcaMasks& masks) {
  TURBINE_CHECK(!options.mask.defined(), "mmca_attention: the masks come from the token kinds");
  AttentionOptions text = options, image = options;
  text.mask = masks.text;
  image.mask = masks.image;
  return add(attention(q, k, v, text, nullptr), attention(q, k, v, image, nullptr));
}

}  // namespace turbine::ops
