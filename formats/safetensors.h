/* safetensors reader: 8-byte little-endian header length, JSON header
 * (name -> {dtype, shape, data_offsets}, optional "__metadata__"), then the
 * data.  The file is mmapped; every tensor is checked to lie inside the data
 * area with a size matching dtype x shape. */
#ifndef AF_FORMATS_SAFETENSORS_H
#define AF_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "formats/tensorsrc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_safetensors af_safetensors;

/* Opens and validates one file.  Returns 0, AF_ERR_IO, AF_ERR_FORMAT
 * (message names the file and the tensor), AF_ERR_UNSUPPORTED (dtype),
 * AF_ERR_NOMEM.  Free with af_safetensors_close. */
int af_safetensors_open(const char *path, af_safetensors **out);
/* Same over caller memory (borrowed), for tests and fuzzers. */
int af_safetensors_open_mem(const void *data, size_t size, const char *label, af_safetensors **out);
void af_safetensors_close(af_safetensors *st);

/* Tensors in header order (borrowed, valid until close). */
size_t af_safetensors_count(const af_safetensors *st);
const af_tsrc_tensor *af_safetensors_tensors(const af_safetensors *st);

/* Reads a shard index (model.safetensors.index.json or
 * pytorch_model.bin.index.json): the distinct shard file names of
 * "weight_map" in first-seen order, as paths joined to the index's folder.
 * *files is malloc'd (array and strings), free with af_shard_list_free.
 * Returns 0, AF_ERR_IO, AF_ERR_FORMAT (also for names with '/' or "..").  */
int af_shard_index_load(const char *index_path, char ***files, size_t *n);
void af_shard_list_free(char **files, size_t n);

#ifdef __cplusplus
}
#endif
#endif
