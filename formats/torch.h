/* PyTorch checkpoint reader (torch.save zip format, torch >= 1.6).
 *
 * The archive holds "<prefix>/data.pkl" (any single folder prefix), the
 * storages as "<prefix>/data/<key>" and "<prefix>/version".  data.pkl is run
 * through the safe pickle subset (formats/pickle.h); tensors become views into
 * the mmapped storages, checked against the storage size. */
#ifndef AF_FORMATS_TORCH_H
#define AF_FORMATS_TORCH_H

#include <stddef.h>
#include <stdint.h>

#include "formats/pickle.h"
#include "formats/tensorsrc.h"
#include "formats/zip.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_torch af_torch;

/* Opens a checkpoint and unpickles data.pkl (storages are not read).  Returns
 * 0, AF_ERR_IO, AF_ERR_FORMAT (not a zip / no data.pkl / bad pickle / legacy
 * pre-1.6 format), AF_ERR_UNSUPPORTED (refused global), AF_ERR_NOMEM.
 * Free with af_torch_close. */
int af_torch_open(const char *path, af_torch **out);
/* Same over caller memory (borrowed), for tests and fuzzers. */
int af_torch_open_mem(const void *data, size_t size, const char *label, af_torch **out);
void af_torch_close(af_torch *ck); /* NULL is fine */

/* The unpickled top-level object (borrowed). */
const af_pk_value *af_torch_root(const af_torch *ck);
const char *af_torch_path(const af_torch *ck);

/* Flattens the tensors below root (a dict, list or tensor) into a tensor
 * list: names are prefix + keys joined by '.' (list items by index).  Each
 * tensor is resolved against its storage entry: dtype, shape, strides and the
 * data pointer; a view reaching past its storage fails with
 * "tensor 'x' reads past the end of storage 'N' (file F)".  Deflated storages
 * are inflated once and kept by ck.  Appends to *list (realloc'd, *n
 * updated); names are allocated in ck and live until af_torch_close.
 * Returns 0, AF_ERR_FORMAT, AF_ERR_RANGE (nesting too deep), AF_ERR_NOMEM. */
int af_torch_tensors(af_torch *ck, const af_pk_value *root, const char *prefix, af_tsrc_tensor **list,
                     size_t *n);

/* The root chosen for a tensor source: dict "model" or "state_dict" when the
 * top level is a dict holding such a dict, else the top level; root_key ""
 * forces the top level, another string picks that key (NULL if absent). */
const af_pk_value *af_torch_pick_root(const af_torch *ck, const char *root_key);

#ifdef __cplusplus
}
#endif
#endif
