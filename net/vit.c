/* EVA ViT-g and ln_vision on OpenCL (see vision.h; the Q-Former is net/qformer.c).  Each forward
 * is a short sequence of named blocks over whole-batch buffers; comments give
 * buffer shapes as (rows, columns). */
#include "net/vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/gemm_tiled.h"
#include "formats/gguf.h"
#include "net/nn.h"

#define F32 AF_GGML_F32
#define TRY(x)                     \
  do {                             \
    if ((rc = (x)) != 0) goto out; \
  } while (0)

typedef struct {
  const af_dtensor *ln1_w, *ln1_b, *qkv_w, *qkv_b, *out_w, *out_b, *ln2_w, *ln2_b, *up_w, *up_b, *down_w,
      *down_b;
  af_gemm_packed pk[4]; /* qkv, out, up, down packed once as fp16 panels (pack_weights), or mem NULL */
} vit_block;

struct af_vit {
  af_cl *cl;
  af_vit_shape s;
  int max_batch;
  const af_dtensor *patch_w, *patch_b, *cls, *pos, *lnv_w, *lnv_b;
  cl_mem pos_mem; /* (T, W) position embeddings in use: the file's, or resized (owned) */
  int pos_owned;
  vit_block *blk;
  af_dbuf pix;     /* (B, 3*S*S) */
  af_dbuf cols;    /* (B*GG, 3*P*P) */
  af_dbuf patches; /* (B*GG, W) */
  af_dbuf x;       /* (B*T, W) residual stream */
  af_dbuf h;       /* (B*T, W) */
  af_dbuf qkv;     /* (B*T, 3W) */
  af_dbuf ctx;     /* (B*T, W) */
  af_dbuf mlp;     /* (B*T, M) */
};

static int meta_u32(const af_gguf *g, const char *key, int *out) {
  uint32_t v;
  int rc = af_gguf_get_u32(g, key, &v);
  if (rc == AF_ERR_NOT_FOUND)
    return af_err(AF_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", af_gguf_path(g), key);
  if (rc) return rc;
  if (v == 0 || v > (1u << 24))
    return af_err(AF_ERR_FORMAT, "%s: metadata %s = %u is out of range", af_gguf_path(g), key, v);
  *out = (int)v;
  return 0;
}

static int meta_f32(const af_gguf *g, const char *key, float *out) {
  int rc = af_gguf_get_f32(g, key, out);
  if (rc == AF_ERR_NOT_FOUND)
    return af_err(AF_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", af_gguf_path(g), key);
  return rc;
}

/* weight with expected dims (ne order): vectors as f32, matrices as f32 or
 * kept fp16 when the profile says so (nn_matrix_type) */
static int want(const af_cl *cl, af_weights *w, const af_dtensor **out, uint64_t ne0, uint64_t ne1,
                const char *fmt, int i, const char *suffix) {
  char name[160];
  snprintf(name, sizeof name, fmt, i);
  strncat(name, suffix, sizeof name - strlen(name) - 1);
  uint64_t ne[2] = {ne0, ne1};
  return af_weights_expect(w, name, ne1 ? nn_matrix_type(cl, w, name) : F32, ne1 ? 2 : 1, ne, out);
}

/* torch.nn.functional.interpolate(mode="bicubic", align_corners=False) of a
 * g x g grid of W-vectors to n x n, as the original interpolate_pos_embed
 * does: Keys cubic with A = -0.75, source index (o + 0.5) * g / n - 0.5 (not
 * clamped), taps clamped to the grid; rows first, then columns, in fp32. */
static void cubic_w(float t, float w[4]) {
  const float A = -0.75f;
  float x;
  x = t + 1.0f, w[0] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
  x = t, w[1] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
  x = 1.0f - t, w[2] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
  x = 2.0f - t, w[3] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

static void resize_grid(const float *in, int g, int n, int W, float *out) {
  float scale = (float)g / (float)n;
  for (int oy = 0; oy < n; oy++) {
    float sy = ((float)oy + 0.5f) * scale - 0.5f, fy = floorf(sy), wy[4];
    cubic_w(sy - fy, wy);
    for (int ox = 0; ox < n; ox++) {
      float sx = ((float)ox + 0.5f) * scale - 0.5f, fx = floorf(sx), wx[4];
      cubic_w(sx - fx, wx);
      for (int c = 0; c < W; c++) {
        float acc = 0.0f;
        for (int i = 0; i < 4; i++) {
          int yy = (int)fy - 1 + i;
          yy = yy < 0 ? 0 : yy >= g ? g - 1 : yy;
          float row = 0.0f;
          for (int j = 0; j < 4; j++) {
            int xx = (int)fx - 1 + j;
            xx = xx < 0 ? 0 : xx >= g ? g - 1 : xx;
            row += in[((size_t)yy * g + xx) * W + c] * wx[j];
          }
          acc += row * wy[i];
        }
        out[((size_t)oy * n + ox) * W + c] = acc;
      }
    }
  }
}

/* position embeddings for a grid of n x n from the file's g x g (CLS kept) */
static int resized_pos(af_vit *v, af_weights *w, int g, int n, int W) {
  const af_gguf_tensor *t = af_gguf_find_tensor(af_weights_gguf(w), "v.pos_embd");
  if (!t || t->type != AF_GGML_F32)
    return af_err(AF_ERR_FORMAT, "%s: v.pos_embd must be f32 to be resized",
                  af_gguf_path(af_weights_gguf(w)));
  const float *src = t->data;
  float *dst = malloc(sizeof(float) * (size_t)(1 + n * n) * W);
  if (!dst) return af_err(AF_ERR_NOMEM, "out of memory");
  memcpy(dst, src, sizeof(float) * W);
  resize_grid(src + W, g, n, W, dst + W);
  int rc = af_cl_alloc(v->cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                       sizeof(float) * (size_t)(1 + n * n) * W, dst, &v->pos_mem);
  free(dst);
  if (!rc) v->pos_owned = 1;
  return rc;
}

int af_vit_new(af_cl *cl, af_weights *w, int max_batch, af_vit **out) {
  return af_vit_new_sized(cl, w, max_batch, 0, out);
}

/* The model's vision hyper-parameters at its own image size, checked. */
static int read_shape(const af_gguf *g, af_vit_shape *s) {
  int rc = 0;
  TRY(af_gguf_check_model(g)); /* a NaN epsilon, zero layers, ... named by key */
  TRY(meta_u32(g, "vision.image_size", &s->image_size));
  TRY(meta_u32(g, "vision.patch_size", &s->patch_size));
  TRY(meta_u32(g, "vision.embedding_length", &s->width));
  TRY(meta_u32(g, "vision.head_count", &s->heads));
  TRY(meta_u32(g, "vision.feed_forward_length", &s->mlp_width));
  TRY(meta_u32(g, "vision.block_count", &s->layers));
  TRY(meta_f32(g, "vision.attention.layer_norm_epsilon", &s->ln_eps));
  TRY(meta_f32(g, "vision.ln_vision_epsilon", &s->ln_vision_eps));
  uint64_t n3 = 3;
  if (af_gguf_get_arr_f32(g, "vision.image_mean", s->mean, &n3) || n3 != 3 ||
      af_gguf_get_arr_f32(g, "vision.image_std", s->std, &n3) || n3 != 3) {
    rc = af_err(AF_ERR_FORMAT, "%s: vision.image_mean/std must be 3 floats each", af_gguf_path(g));
    goto out;
  }
  if (s->image_size % s->patch_size || s->width % s->heads || s->width / s->heads > 128) {
    rc = af_err(AF_ERR_FORMAT, "%s: unsupported vision shape (image %d, patch %d, width %d, heads %d)",
                af_gguf_path(g), s->image_size, s->patch_size, s->width, s->heads);
    goto out;
  }
  s->tokens = 1 + (s->image_size / s->patch_size) * (s->image_size / s->patch_size);
out:
  return rc;
}

int af_vit_probe(const af_weights *w, int image_size, af_vit_shape *out) {
  memset(out, 0, sizeof *out);
  int rc = read_shape(af_weights_gguf(w), out);
  if (rc || image_size <= 0 || image_size == out->image_size) return rc;
  if (image_size % out->patch_size)
    return af_err(AF_ERR_CONFIG, "image size %d is not a multiple of the patch size %d", image_size,
                  out->patch_size);
  int G = image_size / out->patch_size;
  out->image_size = image_size; /* the position grid is resized to G x G (af_vit_new_sized) */
  out->tokens = 1 + G * G;
  return 0;
}

/* fp16 matrices kept at their precision (the profile's fp16_storage) and the
 * profile's own GEMM: each block's four matrices are packed once into fp16
 * panels (cl/gemm_tiled.h af_gemm_pack_b_h, the same bytes as the matrix),
 * so every image runs the packed outer-product kernel instead of dot
 * products over the row-major halves.  The file's pages of the originals
 * are dropped afterwards (they fault back if anything reads them again), so
 * the resident set holds the weights once.  AF_VIT_PACK=0 keeps the old way. */
static int pack_weights(af_vit *v, af_weights *w) {
  if (!af_gemm_tiled_enabled(v->cl) || !af_cl_tuning_int0(v->cl, "AF_VIT_PACK", 1)) return 0;
  af_queue *q = NULL;
  int rc = 0;
  for (int l = 0; l < v->s.layers && !rc; l++) {
    vit_block *b = &v->blk[l];
    const af_dtensor *m[4] = {b->qkv_w, b->out_w, b->up_w, b->down_w};
    int packed = 0;
    for (int i = 0; i < 4 && !rc; i++) {
      if (m[i]->type != AF_GGML_F16) continue;
      if (!q && (rc = af_queue_new(v->cl, &q))) break;
      size_t k = m[i]->ne[0], n = m[i]->n_elements / k;
      rc = af_gemm_pack_b_h(q, NULL, n, k, m[i]->mem, 0, k, &b->pk[i]);
      packed++;
    }
    /* a block at a time, so that the originals' pages and the panels are
     * not resident together (peak: the panels + one block's pages) */
    if (!rc && packed) rc = af_queue_finish(q);
    if (!rc && packed) af_weights_release_host(w);
  }
  af_queue_free(q);
  return rc;
}

/* x·Wᵀ + b through the packed panels when there are some, else nn_linear */
static int linear(af_queue *q, af_dbuf x, size_t rows, const af_dtensor *w, const af_gemm_packed *pk,
                  const af_dtensor *bias, af_dbuf y) {
  if (!pk->mem) return nn_linear(q, x, 0, rows, w, bias, y, 0);
  int rc = af_gemm_tiled_packed(q, NULL, 0, rows, 1.0f, x.mem, x.off, pk->k, pk, 0.0f, y.mem, y.off, pk->n);
  if (rc) return af_err_replace(rc, "linear '%s': %s", w->name, af_error_message());
  return bias ? af_op_add_bias(q, y, pk->n, rows, pk->n, bias->mem) : 0;
}

int af_vit_new_sized(af_cl *cl, af_weights *w, int max_batch, int image_size, af_vit **out) {
  *out = NULL;
  const af_gguf *g = af_weights_gguf(w);
  af_vit *v = calloc(1, sizeof *v);
  if (!v) return af_err(AF_ERR_NOMEM, "out of memory");
  int rc = 0;
  af_vit_shape *s = &v->s;
  v->cl = cl;
  v->max_batch = max_batch > 0 ? max_batch : 1;
  TRY(read_shape(g, s));
  int S = s->image_size, P = s->patch_size, W = s->width, M = s->mlp_width;
  int G = S / P;
  uint64_t pne[4] = {(uint64_t)P, (uint64_t)P, 3, (uint64_t)W},
           pos_ne[2] = {(uint64_t)W, (uint64_t)s->tokens};
  if (image_size > 0 && image_size != S) { /* another input size: resize the position grid */
    if (image_size % P) {
      rc = af_err(AF_ERR_CONFIG, "image size %d is not a multiple of the patch size %d", image_size, P);
      goto out;
    }
    TRY(af_weights_expect(w, "v.pos_embd", F32, 2, pos_ne, &v->pos));
    int n = image_size / P;
    TRY(resized_pos(v, w, G, n, W));
    S = s->image_size = image_size;
    G = n;
    s->tokens = 1 + G * G;
  }
  TRY(af_weights_expect(w, "v.patch_embd.weight", nn_matrix_type(cl, w, "v.patch_embd.weight"), 4, pne,
                        &v->patch_w));
  TRY(want(cl, w, &v->patch_b, W, 0, "v.patch_embd.bias", 0, ""));
  TRY(want(cl, w, &v->cls, W, 0, "v.cls", 0, ""));
  if (!v->pos_owned) {
    TRY(af_weights_expect(w, "v.pos_embd", F32, 2, pos_ne, &v->pos));
    v->pos_mem = v->pos->mem;
  }
  TRY(want(cl, w, &v->lnv_w, W, 0, "v.ln_vision.weight", 0, ""));
  TRY(want(cl, w, &v->lnv_b, W, 0, "v.ln_vision.bias", 0, ""));
  v->blk = calloc((size_t)s->layers, sizeof *v->blk);
  if (!v->blk) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (int l = 0; l < s->layers; l++) {
    vit_block *b = &v->blk[l];
    TRY(want(cl, w, &b->ln1_w, W, 0, "v.blk.%d.ln1", l, ".weight"));
    TRY(want(cl, w, &b->ln1_b, W, 0, "v.blk.%d.ln1", l, ".bias"));
    TRY(want(cl, w, &b->qkv_w, W, 3 * (uint64_t)W, "v.blk.%d.attn_qkv", l, ".weight"));
    TRY(want(cl, w, &b->qkv_b, 3 * (uint64_t)W, 0, "v.blk.%d.attn_qkv", l, ".bias"));
    TRY(want(cl, w, &b->out_w, W, W, "v.blk.%d.attn_out", l, ".weight"));
    TRY(want(cl, w, &b->out_b, W, 0, "v.blk.%d.attn_out", l, ".bias"));
    TRY(want(cl, w, &b->ln2_w, W, 0, "v.blk.%d.ln2", l, ".weight"));
    TRY(want(cl, w, &b->ln2_b, W, 0, "v.blk.%d.ln2", l, ".bias"));
    TRY(want(cl, w, &b->up_w, W, M, "v.blk.%d.ffn_up", l, ".weight"));
    TRY(want(cl, w, &b->up_b, M, 0, "v.blk.%d.ffn_up", l, ".bias"));
    TRY(want(cl, w, &b->down_w, M, W, "v.blk.%d.ffn_down", l, ".weight"));
    TRY(want(cl, w, &b->down_b, W, 0, "v.blk.%d.ffn_down", l, ".bias"));
  }
  TRY(pack_weights(v, w));
  size_t B = (size_t)v->max_batch, T = (size_t)s->tokens, GG = (size_t)G * G;
  TRY(nn_alloc(cl, B * 3 * S * S, &v->pix));
  TRY(nn_alloc(cl, B * GG * 3 * P * P, &v->cols));
  TRY(nn_alloc(cl, B * GG * W, &v->patches));
  TRY(nn_alloc(cl, B * T * W, &v->x));
  TRY(nn_alloc(cl, B * T * W, &v->h));
  TRY(nn_alloc(cl, B * T * 3 * W, &v->qkv));
  TRY(nn_alloc(cl, B * T * W, &v->ctx));
  TRY(nn_alloc(cl, B * T * M, &v->mlp));
out:
  if (rc) {
    af_vit_free(v);
    return rc;
  }
  *out = v;
  return 0;
}

void af_vit_free(af_vit *v) {
  if (!v) return;
  af_dbuf *bufs[] = {&v->pix, &v->cols, &v->patches, &v->x, &v->h, &v->qkv, &v->ctx, &v->mlp};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) nn_free(bufs[i]);
  if (v->pos_owned && v->pos_mem) clReleaseMemObject(v->pos_mem);
  for (int l = 0; v->blk && l < v->s.layers; l++)
    for (int i = 0; i < 4; i++) af_gemm_packed_release(&v->blk[l].pk[i]);
  free(v->blk);
  free(v);
}

int af_vit_reserve(af_vit *v, af_queue *q) {
  af_queue_reserve_begin(q);
  int rc = af_vit_encode(v, q, NULL, v->max_batch, NULL);
  af_queue_reserve_end(q);
  return rc;
}

const af_vit_shape *af_vit_shape_of(const af_vit *v) {
  return &v->s;
}

static int run2(af_queue *q, const char *kname, size_t g0, size_t g1, const char *label, cl_kernel *k) {
  size_t g[2] = {g0, g1}, l[2] = {8, 1};
  (void)kname;
  return af_queue_run(q, *k, 2, g, l, label);
}

/* patches -> cols (im2col) -> one GEMM -> tokens with CLS, bias and positions */
static int vit_embed(af_vit *v, af_queue *q, int n) {
  const af_vit_shape *s = &v->s;
  int S = s->image_size, P = s->patch_size, G = S / P, GG = G * G, W = s->width, rows = n * GG, rc;
  cl_kernel k;
  if ((rc = af_queue_kernel(q, "vision.cl", "af_vit_im2col", NULL, &k))) return rc;
  AF_ARG(rc, k, 0, v->pix.mem, fail);
  AF_ARG(rc, k, 1, v->cols.mem, fail);
  AF_ARG(rc, k, 2, S, fail);
  AF_ARG(rc, k, 3, P, fail);
  AF_ARG(rc, k, 4, rows, fail);
  if ((rc = run2(q, "im2col", (size_t)3 * P * P, (size_t)rows, "vit_im2col", &k))) return rc;
  if ((rc = nn_linear(q, v->cols, 0, (size_t)rows, v->patch_w, NULL, v->patches, 0))) return rc;
  if ((rc = af_queue_kernel(q, "vision.cl", "af_vit_assemble", NULL, &k))) return rc;
  int total = n * s->tokens;
  AF_ARG(rc, k, 0, v->patches.mem, fail);
  AF_ARG(rc, k, 1, v->patch_b->mem, fail);
  AF_ARG(rc, k, 2, v->cls->mem, fail);
  AF_ARG(rc, k, 3, v->pos_mem, fail);
  AF_ARG(rc, k, 4, v->x.mem, fail);
  AF_ARG(rc, k, 5, W, fail);
  AF_ARG(rc, k, 6, GG, fail);
  AF_ARG(rc, k, 7, total, fail);
  return run2(q, "assemble", (size_t)W, (size_t)total, "vit_assemble", &k);
fail:
  return rc;
}

int af_vit_encode(af_vit *v, af_queue *q, const float *pixels, int n, float *out) {
  const af_vit_shape *s = &v->s;
  if (n < 1 || n > v->max_batch)
    return af_err(AF_ERR_INVALID, "vit: batch %d outside 1..%d", n, v->max_batch);
  int rc, T = s->tokens, W = s->width, M = s->mlp_width, hd = W / s->heads;
  size_t rows = (size_t)n * T, S = (size_t)s->image_size;
  if ((rc = af_queue_write(q, v->pix.mem, 0, sizeof(float) * n * 3 * S * S, pixels))) return rc;
  if ((rc = vit_embed(v, q, n))) return rc;
  float scale = 1.0f / sqrtf((float)hd);
  for (int l = 0; l < s->layers; l++) {
    const vit_block *b = &v->blk[l];
    /* x = x + proj(attn(LN1(x))) */
    if ((rc = nn_layernorm(q, v->x, rows, W, b->ln1_w, b->ln1_b, s->ln_eps, v->h))) return rc;
    if ((rc = linear(q, v->h, rows, b->qkv_w, &b->pk[0], b->qkv_b, v->qkv)))
      return rc; /* (rows, 3W): Q|K|V */
    af_attn_view qv = {v->qkv.mem, 0, 3 * W, (long)T * 3 * W}, kv = qv, vv = qv,
                 ov = {v->ctx.mem, 0, W, (long)T * W};
    kv.off = (size_t)W;
    vv.off = 2 * (size_t)W;
    if ((rc = af_attention(q, qv, kv, vv, ov, T, T, s->heads, hd, n, scale, 0, 0))) return rc;
    if ((rc = linear(q, v->ctx, rows, b->out_w, &b->pk[1], b->out_b, v->h))) return rc;
    if ((rc = nn_add(q, v->x, v->h, rows * W))) return rc;
    /* x = x + fc2(GELU(fc1(LN2(x)))) */
    if ((rc = nn_layernorm(q, v->x, rows, W, b->ln2_w, b->ln2_b, s->ln_eps, v->h))) return rc;
    if ((rc = linear(q, v->h, rows, b->up_w, &b->pk[2], b->up_b, v->mlp))) return rc; /* (rows, M) */
    if ((rc = nn_gelu(q, v->mlp, rows * M))) return rc;
    if ((rc = linear(q, v->mlp, rows, b->down_w, &b->pk[3], b->down_b, v->h))) return rc;
    if ((rc = nn_add(q, v->x, v->h, rows * W))) return rc;
  }
  if ((rc = nn_layernorm(q, v->x, rows, W, v->lnv_w, v->lnv_b, s->ln_vision_eps, v->h))) return rc;
  return af_queue_read(q, v->h.mem, 0, sizeof(float) * rows * W, out);
}
