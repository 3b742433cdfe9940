/* The vision path of one image for `describe` and `chat` (see cli.h). */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "image/image.h"

int af_cli_embedder_open(af_cl *cl, const char *model, af_cli_embedder *e) {
  memset(e, 0, sizeof *e);
  int rc = af_weights_open(cl, model, &e->w);
  if (!rc) rc = af_vit_new(cl, e->w, 1, &e->vit);
  if (!rc) rc = af_qformer_new(cl, e->w, 1, af_vit_shape_of(e->vit)->tokens, &e->qf);
  if (!rc) rc = af_queue_new(cl, &e->q);
  if (rc) return rc;
  const af_vit_shape *vs = af_vit_shape_of(e->vit);
  const af_qformer_shape *fs = af_qformer_shape_of(e->qf);
  e->S = vs->image_size;
  e->T = (size_t)vs->tokens, e->W = (size_t)vs->width;
  e->Q = (size_t)fs->queries, e->D = (size_t)fs->width, e->L = (size_t)fs->proj_out;
  af_image_norm_lut(vs->mean, vs->std, e->lut);
  size_t SS = (size_t)e->S * (size_t)e->S;
  e->pix = malloc(sizeof(float) * 3 * SS);
  e->vt = malloc(sizeof(float) * e->T * e->W);
  e->qo = malloc(sizeof(float) * e->Q * e->D);
  e->po = malloc(sizeof(float) * e->Q * e->L);
  e->small = malloc(SS * 3);
  if (!e->pix || !e->vt || !e->qo || !e->po || !e->small) return af_err(AF_ERR_NOMEM, "out of memory");
  return 0;
}

int af_cli_embed(af_cli_embedder *e, const char *path) {
  af_image_u8 im = {0};
  int rc = af_image_decode(path, NULL, &im);
  if (!rc) rc = af_image_resize_bicubic(im.data, im.w, im.h, e->small, e->S, e->S);
  af_image_free(&im);
  if (!rc) {
    af_image_normalize_ref(e->small, (size_t)e->S * (size_t)e->S, e->lut, e->pix);
    rc = af_vit_encode(e->vit, e->q, e->pix, 1, e->vt);
  }
  if (!rc) rc = af_qformer_forward(e->qf, e->q, e->vt, 1, e->qo, e->po);
  return rc;
}

void af_cli_embedder_close(af_cli_embedder *e) {
  free(e->pix), free(e->vt), free(e->qo), free(e->po), free(e->small);
  af_queue_free(e->q);
  af_qformer_free(e->qf);
  af_vit_free(e->vit);
  af_weights_free(e->w);
  memset(e, 0, sizeof *e);
}
