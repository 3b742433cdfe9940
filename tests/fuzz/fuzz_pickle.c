/* libFuzzer target: the safe pickle interpreter on arbitrary bytes.  A loaded
 * value tree is walked (bounded: it may be shared or cyclic). */
#include <stddef.h>
#include <stdint.h>

#include "artflow/status.h"
#include "formats/pickle.h"

static size_t walk(const af_pk_value *v, int depth, size_t *budget) {
  if (!v || depth > 40 || *budget == 0) return 0;
  (*budget)--;
  size_t n = 1;
  switch (v->kind) {
    case AF_PK_TUPLE:
    case AF_PK_LIST:
      for (size_t i = 0; i < v->u.seq.n; i++) n += walk(v->u.seq.v[i], depth + 1, budget);
      break;
    case AF_PK_DICT:
      for (size_t i = 0; i < 2 * v->u.dict.n; i++) n += walk(v->u.dict.kv[i], depth + 1, budget);
      n += walk(v->u.dict.attrs, depth + 1, budget);
      break;
    case AF_PK_TENSOR:
      n += walk(v->u.tensor.storage, depth + 1, budget);
      break;
    case AF_PK_STR:
    case AF_PK_BYTES:
      n += v->u.str.len && v->u.str.s[v->u.str.len] == 0;
      break;
    default:
      break;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  af_pickle *pk = NULL;
  if (af_pickle_load(data, size, "fuzz.pkl", &pk) == 0) {
    size_t budget = 100000;
    walk(af_pickle_root(pk), 0, &budget);
    af_pk_dict_get(af_pickle_root(pk), "model");
  }
  af_pickle_free(pk);
  af_error_clear();
  return 0;
}
