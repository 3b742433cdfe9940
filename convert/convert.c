/* The release checkpoints -> one GGUF file (see convert.h): hyper-parameters
 * from the YAML, config.json and the tensors (checked against each other),
 * a source for every tensor of the layout, the key-coverage report, then a
 * streaming write one row chunk at a time. */
#include "convert/convert.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artflow/status.h"
#include "convert/arch.h"
#include "convert/mkmodel.h"
#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/quant.h"
#include "formats/tensorsrc.h"

enum { SRC_VIT, SRC_QF, SRC_LLM, SRC_AD, N_SRC };
static const char *k_src_name[N_SRC] = {"vit", "qformer", "llm", "adapter"};

typedef struct {
  const af_tsrc_tensor *src;  /* main source */
  const af_tsrc_tensor *src2; /* v_bias for the qkv bias concat */
  int file;                   /* SRC_* of src */
  int qkv_bias;               /* concat(q_bias, zeros, v_bias) */
} mapping;

typedef struct {
  const af_convert_opts *o;
  af_tsrc *s[N_SRC];
  char **used[N_SRC]; /* names used per source (sorted after mapping) */
  size_t n_used[N_SRC];
  af_arch a;
} conv;

static int mark_used(conv *c, int f, const char *name) {
  char **p = realloc(c->used[f], (c->n_used[f] + 1) * sizeof *p);
  if (!p) return af_err(AF_ERR_NOMEM, "out of memory");
  c->used[f] = p;
  if (!(p[c->n_used[f]] = strdup(name))) return af_err(AF_ERR_NOMEM, "out of memory");
  c->n_used[f]++;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_used(const conv *c, int f, const char *name) {
  return c->n_used[f] && bsearch(&name, c->used[f], c->n_used[f], sizeof(char *), cmp_str) != NULL;
}

static const af_tsrc_tensor *find(const conv *c, int f, const char *fmt, int i) {
  char key[160];
  if (!c->s[f]) return NULL;
  snprintf(key, sizeof key, fmt, i);
  return af_tsrc_find(c->s[f], key);
}

/* The adapter file's tensor that the original puts over the LLM's `key`, or
 * NULL: mini_gpt4.py loads ArtGPT-4.pth with
 * load_state_dict(strict=False), so any llama_model.<key> in it wins over
 * Vicuna's; ArtGPT-4 names a layer's attention self_attn.0 (its adapter is
 * self_attn.1).  Only for architecture artgpt4, like the re-trained gains. */
static const af_tsrc_tensor *llm_override(const conv *c, const char *key) {
  if (c->a.llm.adapter_width <= 0 || !c->s[SRC_AD]) return NULL;
  char ov[512];
  snprintf(ov, sizeof ov, "llama_model.%s", key);
  const af_tsrc_tensor *t = af_tsrc_find(c->s[SRC_AD], ov);
  const char *sa = strstr(key, "self_attn.");
  if (!t && sa) {
    snprintf(ov, sizeof ov, "llama_model.%.*sself_attn.0.%s", (int)(sa - key), key, sa + 10);
    t = af_tsrc_find(c->s[SRC_AD], ov);
  }
  return t;
}

/* Highest N+1 over keys "<prefix>N." in source f (0 when none). */
static int count_blocks(const conv *c, int f, const char *prefix) {
  int n = 0;
  size_t pl = strlen(prefix);
  for (size_t i = 0; c->s[f] && i < af_tsrc_count(c->s[f]); i++) {
    const char *k = af_tsrc_get(c->s[f], i)->name;
    if (strncmp(k, prefix, pl) == 0) {
      char *end;
      long v = strtol(k + pl, &end, 10);
      if (end != k + pl && *end == '.' && v >= 0 && v < 100000 && v + 1 > n) n = (int)v + 1;
    }
  }
  return n;
}

/* Source key (printf format with one %d) for a layout tensor name. */
static int source_of(const conv *c, const af_tspec *t, mapping *m) {
  static const struct {
    const char *gguf; /* after "v.blk.%d." / "q.blk.%d." / "blk.%d." or whole name */
    int file;
    const char *key;
  } k_map[] = {
      {"v.patch_embd.weight", SRC_VIT, "patch_embed.proj.weight"},
      {"v.patch_embd.bias", SRC_VIT, "patch_embed.proj.bias"},
      {"v.cls", SRC_VIT, "cls_token"},
      {"v.pos_embd", SRC_VIT, "pos_embed"},
      {"v.ln_vision.weight", SRC_QF, "ln_vision.weight"},
      {"v.ln_vision.bias", SRC_QF, "ln_vision.bias"},
      {"q.query_tokens", SRC_QF, "query_tokens"},
      {"q.ln_emb.weight", SRC_QF, "Qformer.bert.embeddings.LayerNorm.weight"},
      {"q.ln_emb.bias", SRC_QF, "Qformer.bert.embeddings.LayerNorm.bias"},
      {"proj.weight", SRC_AD, "llama_proj.weight"},
      {"proj.bias", SRC_AD, "llama_proj.bias"},
      {"token_embd.weight", SRC_LLM, "model.embed_tokens.weight"},
      {"output_norm.weight", SRC_LLM, "model.norm.weight"},
      {"output.weight", SRC_LLM, "lm_head.weight"},
      {"v:ln1", SRC_VIT, "blocks.%d.norm1"},
      {"v:ln2", SRC_VIT, "blocks.%d.norm2"},
      {"v:attn_qkv", SRC_VIT, "blocks.%d.attn.qkv"},
      {"v:attn_out", SRC_VIT, "blocks.%d.attn.proj"},
      {"v:ffn_up", SRC_VIT, "blocks.%d.mlp.fc1"},
      {"v:ffn_down", SRC_VIT, "blocks.%d.mlp.fc2"},
      {"q:sa_q", SRC_QF, "Qformer.bert.encoder.layer.%d.attention.self.query"},
      {"q:sa_k", SRC_QF, "Qformer.bert.encoder.layer.%d.attention.self.key"},
      {"q:sa_v", SRC_QF, "Qformer.bert.encoder.layer.%d.attention.self.value"},
      {"q:sa_out", SRC_QF, "Qformer.bert.encoder.layer.%d.attention.output.dense"},
      {"q:sa_ln", SRC_QF, "Qformer.bert.encoder.layer.%d.attention.output.LayerNorm"},
      {"q:ca_q", SRC_QF, "Qformer.bert.encoder.layer.%d.crossattention.self.query"},
      {"q:ca_k", SRC_QF, "Qformer.bert.encoder.layer.%d.crossattention.self.key"},
      {"q:ca_v", SRC_QF, "Qformer.bert.encoder.layer.%d.crossattention.self.value"},
      {"q:ca_out", SRC_QF, "Qformer.bert.encoder.layer.%d.crossattention.output.dense"},
      {"q:ca_ln", SRC_QF, "Qformer.bert.encoder.layer.%d.crossattention.output.LayerNorm"},
      {"q:ffn_up", SRC_QF, "Qformer.bert.encoder.layer.%d.intermediate_query.dense"},
      {"q:ffn_down", SRC_QF, "Qformer.bert.encoder.layer.%d.output_query.dense"},
      {"q:ffn_ln", SRC_QF, "Qformer.bert.encoder.layer.%d.output_query.LayerNorm"},
      {"l:attn_q", SRC_LLM, "model.layers.%d.self_attn.q_proj"},
      {"l:attn_k", SRC_LLM, "model.layers.%d.self_attn.k_proj"},
      {"l:attn_v", SRC_LLM, "model.layers.%d.self_attn.v_proj"},
      {"l:attn_output", SRC_LLM, "model.layers.%d.self_attn.o_proj"},
      {"l:ffn_gate", SRC_LLM, "model.layers.%d.mlp.gate_proj"},
      {"l:ffn_up", SRC_LLM, "model.layers.%d.mlp.up_proj"},
      {"l:ffn_down", SRC_LLM, "model.layers.%d.mlp.down_proj"},
      {"l:adapter_down", SRC_AD, "llama_model.model.layers.%d.self_attn.1.down"},
      {"l:adapter_up", SRC_AD, "llama_model.model.layers.%d.self_attn.1.up"},
  };
  char part[64] = "", fmt[192];
  const char *suffix = "";
  int layer = -1;
  memset(m, 0, sizeof *m);
  /* split "v.blk.3.ffn_up.weight" into class 'v', layer 3, part "ffn_up", suffix "weight" */
  char cls = 0;
  const char *rest = NULL;
  if (strncmp(t->name, "v.blk.", 6) == 0)
    cls = 'v', rest = t->name + 6;
  else if (strncmp(t->name, "q.blk.", 6) == 0)
    cls = 'q', rest = t->name + 6;
  else if (strncmp(t->name, "blk.", 4) == 0)
    cls = 'l', rest = t->name + 4;
  if (rest) {
    layer = atoi(rest);
    rest = strchr(rest, '.') + 1;
    const char *dot = strrchr(rest, '.');
    snprintf(part, sizeof part, "%c:%.*s", cls, (int)(dot - rest), rest);
    suffix = dot + 1;
  }
  if (cls == 'l' && (strcmp(part, "l:attn_norm") == 0 || strcmp(part, "l:ffn_norm") == 0)) {
    /* ArtGPT-4 re-trained these gains: the adapter file's value wins */
    const char *n = part[2] == 'a' ? "input_layernorm" : "post_attention_layernorm";
    snprintf(fmt, sizeof fmt, "llama_model.model.layers.%%d.%s.weight", n);
    m->src = c->a.llm.adapter_width > 0 ? find(c, SRC_AD, fmt, layer) : NULL;
    m->file = SRC_AD;
    if (!m->src) {
      snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.weight", n);
      m->src = find(c, SRC_LLM, fmt, layer);
      m->file = SRC_LLM;
    }
    return 0;
  }
  if (cls == 'v' && strcmp(part, "v:attn_qkv") == 0 && strcmp(suffix, "bias") == 0) {
    m->src = find(c, SRC_VIT, "blocks.%d.attn.q_bias", layer);
    m->src2 = find(c, SRC_VIT, "blocks.%d.attn.v_bias", layer);
    m->file = SRC_VIT;
    m->qkv_bias = 1;
    return 0;
  }
  for (size_t i = 0; i < sizeof k_map / sizeof k_map[0]; i++) {
    if (rest ? strcmp(k_map[i].gguf, part) != 0 : strcmp(k_map[i].gguf, t->name) != 0) continue;
    if (rest)
      snprintf(fmt, sizeof fmt, "%s.%s", k_map[i].key, suffix);
    else
      snprintf(fmt, sizeof fmt, "%s", k_map[i].key);
    m->file = k_map[i].file;
    char key[256];
    snprintf(key, sizeof key, fmt, layer);
    if (m->file == SRC_LLM && (m->src = llm_override(c, key)) != NULL) {
      m->file = SRC_AD;
      return 0;
    }
    m->src = find(c, m->file, fmt, layer);
    return 0;
  }
  return af_err(AF_ERR_INVALID, "convert: no source rule for tensor %s", t->name);
}

/* Expected source key for messages when the tensor is missing. */
static const char *why_missing(int file) {
  return file == SRC_AD ? " (no --adapter file given?)" : "";
}

/* Source shape, leading 1s squeezed, reversed, must equal t->ne. */
static int check_shape(const conv *c, const af_tspec *t, const af_tsrc_tensor *s, uint64_t expect_numel) {
  int nd = s->ndim, lead = 0;
  while (lead < nd - 1 && s->shape[lead] == 1) lead++;
  int ok = (uint32_t)(nd - lead) == t->n_dims || (nd == 0 && t->n_dims == 1 && t->ne[0] == 1);
  for (uint32_t d = 0; ok && d < t->n_dims && nd > 0; d++) ok = (uint64_t)s->shape[nd - 1 - d] == t->ne[d];
  if (expect_numel && s->numel != expect_numel) ok = 0;
  if (ok) return 0;
  char have[96], want[96] = "[";
  af_tsrc_shape_str(s, have, sizeof have);
  for (uint32_t d = t->n_dims; d-- > 0;)
    snprintf(want + strlen(want), sizeof want - strlen(want), "%llu%s", (unsigned long long)t->ne[d],
             d ? ", " : "]");
  return af_err(AF_ERR_MISMATCH, "%s: tensor %s in %s has shape %s but %s implies %s for %s", s->file,
                s->name, s->file, have, c->o->arch, want, t->name);
}

static long long dim_of(const af_tsrc_tensor *t, int d) {
  return t && d < t->ndim ? (long long)t->shape[d < 0 ? t->ndim + d : d] : -1;
}

/* Reads the hyper-parameters the files reveal and checks them against the YAML
 * (filling values the YAML leaves out). */
static int derive(conv *c) {
  af_arch *a = &c->a;
  const char *ap = c->o->arch;
  const af_tsrc_tensor *t;
  int rc = 0;
  char where[600], cfg[600];
#define CHECK_DIM(key, field, val, what)                   \
  do {                                                     \
    if (!rc && (val) >= 0) {                               \
      snprintf(where, sizeof where, "%s", what);           \
      rc = af_arch_check(ap, key, &(field), (val), where); \
    }                                                      \
  } while (0)
  /* vision */
  t = af_tsrc_find(c->s[SRC_VIT], "cls_token");
  CHECK_DIM("vision.width", a->vision.width, dim_of(t, -1), "eva_vit_g.pth (cls_token)");
  t = af_tsrc_find(c->s[SRC_VIT], "patch_embed.proj.weight");
  CHECK_DIM("vision.patch_size", a->vision.patch_size, dim_of(t, 2),
            "eva_vit_g.pth (patch_embed.proj.weight)");
  t = af_tsrc_find(c->s[SRC_VIT], "blocks.0.mlp.fc1.weight");
  CHECK_DIM("vision.mlp_width", a->vision.mlp_width, dim_of(t, 0), "eva_vit_g.pth (blocks.0.mlp.fc1.weight)");
  int vblocks = count_blocks(c, SRC_VIT, "blocks.");
  if (!rc && vblocks < a->vision.layers)
    rc = af_err(AF_ERR_MISMATCH, "%s: vision.layers is %d but %s stores only %d blocks", ap, a->vision.layers,
                c->o->vit, vblocks);
  /* Q-Former */
  t = af_tsrc_find(c->s[SRC_QF], "query_tokens");
  CHECK_DIM("qformer.width", a->qformer.width, dim_of(t, -1), "the BLIP-2 checkpoint (query_tokens)");
  CHECK_DIM("qformer.queries", a->qformer.queries, t && t->ndim >= 2 ? dim_of(t, -2) : -1,
            "the BLIP-2 checkpoint (query_tokens)");
  int qblocks = count_blocks(c, SRC_QF, "Qformer.bert.encoder.layer.");
  CHECK_DIM("qformer.layers", a->qformer.layers, (long long)qblocks,
            "the BLIP-2 checkpoint (encoder layers)");
  t = af_tsrc_find(c->s[SRC_QF], "Qformer.bert.encoder.layer.0.intermediate_query.dense.weight");
  CHECK_DIM("qformer.ffn_width", a->qformer.ffn_width, dim_of(t, 0),
            "the BLIP-2 checkpoint (intermediate_query)");
  /* LLM: config.json first, then the tensors */
  af_hfconfig hf;
  if (!rc) rc = af_hfconfig_load(c->o->llm, &hf);
  if (!rc) {
    snprintf(cfg, sizeof cfg, "%s/config.json", c->o->llm);
    CHECK_DIM("llm.hidden", a->llm.hidden, hf.hidden_size, cfg);
    CHECK_DIM("llm.layers", a->llm.layers, hf.num_hidden_layers, cfg);
    CHECK_DIM("llm.heads", a->llm.heads, hf.num_attention_heads, cfg);
    CHECK_DIM("llm.kv_heads", a->llm.kv_heads, hf.num_key_value_heads, cfg);
    CHECK_DIM("llm.ffn", a->llm.ffn, hf.intermediate_size, cfg);
    CHECK_DIM("llm.context_length", a->llm.context_length, hf.max_position_embeddings, cfg);
    /* the original takes eps and the RoPE base from config.json: a YAML value
     * that disagrees is an error, not a silent override */
    if (!rc && a->llm.rms_eps > 0 && hf.rms_norm_eps > 0 &&
        fabs((double)a->llm.rms_eps - hf.rms_norm_eps) > 1e-6 * hf.rms_norm_eps)
      rc = af_err(AF_ERR_MISMATCH, "%s: llm.rms_eps is %g but %s says rms_norm_eps %g", ap,
                  (double)a->llm.rms_eps, cfg, hf.rms_norm_eps);
    if (!rc && a->llm.rope_base > 0 && hf.rope_theta > 0 &&
        fabs((double)a->llm.rope_base - hf.rope_theta) > 1e-6 * hf.rope_theta)
      rc = af_err(AF_ERR_MISMATCH, "%s: llm.rope_base is %g but %s says rope_theta %g", ap,
                  (double)a->llm.rope_base, cfg, hf.rope_theta);
    if (a->llm.rms_eps <= 0 && hf.rms_norm_eps > 0) a->llm.rms_eps = (float)hf.rms_norm_eps;
    if (a->llm.rope_base <= 0 && hf.rope_theta > 0) a->llm.rope_base = (float)hf.rope_theta;
    /* the ids generate() uses: transformers loads generation_config.json
     * from the folder when it is there, else takes them from config.json.
     * Vicuna v0 folders may say bos 0 / eos 1 (docs/model.md §6.2); the original
     * then stops on id 1, not on </s>, and starts its output with a dummy 0 */
    af_hfconfig gc = hf;
    char gpath[4200];
    snprintf(gpath, sizeof gpath, "%s/generation_config.json", c->o->llm);
    if (!rc && access(gpath, F_OK) == 0) rc = af_hfconfig_load(gpath, &gc);
    if (!rc) {
      a->llm.gen_set = 1;
      a->llm.gen_bos = gc.bos_token_id >= 0 && gc.bos_token_id < INT32_MAX ? (int)gc.bos_token_id : -1;
      a->llm.gen_eos = gc.eos_token_id >= 0 && gc.eos_token_id < INT32_MAX ? (int)gc.eos_token_id : -1;
    }
  }
  t = af_tsrc_find(c->s[SRC_LLM], "model.embed_tokens.weight");
  CHECK_DIM("llm.hidden", a->llm.hidden, dim_of(t, 1), "the LLM (model.embed_tokens.weight)");
  CHECK_DIM("llm.vocab", a->llm.vocab, dim_of(t, 0), "the LLM (model.embed_tokens.weight rows)");
  CHECK_DIM("llm.layers", a->llm.layers, (long long)count_blocks(c, SRC_LLM, "model.layers."),
            "the LLM (decoder layers)");
  t = af_tsrc_find(c->s[SRC_LLM], "model.layers.0.mlp.gate_proj.weight");
  CHECK_DIM("llm.ffn", a->llm.ffn, dim_of(t, 0), "the LLM (mlp.gate_proj.weight)");
  /* minigpt4: adapters (and re-trained gains) in the file are ignored */
  t = strcmp(a->architecture, "minigpt4") == 0
          ? NULL
          : find(c, SRC_AD, "llama_model.model.layers.%d.self_attn.1.down.weight", 0);
  if (!rc && t) {
    CHECK_DIM("llm.adapter_width", a->llm.adapter_width, dim_of(t, 0),
              "the adapter file (self_attn.1.down.weight)");
  } else if (!rc && (a->llm.adapter_width > 0 || strcmp(a->architecture, "artgpt4") == 0)) {
    rc = af_err(AF_ERR_NOT_FOUND,
                "%s: architecture artgpt4 needs the ImageAdapter tensors "
                "(llama_model.model.layers.N.self_attn.1.*) but %s has none",
                ap, c->o->adapter ? c->o->adapter : "no --adapter file was given and the LLM");
  }
#undef CHECK_DIM
  if (!rc) rc = af_arch_require_llm(a, ap);
  return rc;
}

/* Why an unused input key is fine to leave out, or NULL when it is unknown. */
static const char *ignore_reason(const conv *c, int f, const char *k) {
  if (strstr(k, "rotary_emb.inv_freq")) return "RoPE buffer (recomputed)";
  if (strstr(k, "position_ids")) return "position-id buffer (unused)";
  if (f == SRC_VIT && strncmp(k, "blocks.", 7) == 0 && atoi(k + 7) >= c->a.vision.layers)
    return "unused ViT block (the model uses the first vision.layers blocks)";
  if (f == SRC_QF || f == SRC_AD) {
    if (strncmp(k, "t5_proj.", 8) == 0) return "T5 projection (not used by MiniGPT-4)";
    if (strncmp(k, "Qformer.cls.", 12) == 0) return "Q-Former MLM head (deleted by MiniGPT-4)";
    if (strstr(k, "Qformer.bert.embeddings.word_embeddings") || strstr(k, "position_embeddings"))
      return "Q-Former text embeddings (deleted by MiniGPT-4)";
    if (strncmp(k, "Qformer.bert.encoder.layer.", 27) == 0 &&
        (strstr(k, ".intermediate.dense.") || strstr(k, ".output.dense.") ||
         strstr(k, ".output.LayerNorm.")) &&
        !strstr(k, "attention.output"))
      return "Q-Former text FFN (deleted by MiniGPT-4)";
    if (strncmp(k, "visual_encoder.", 15) == 0) return "ViT copy (eva_vit_g.pth is used)";
  }
  if (f == SRC_AD && c->a.llm.adapter_width <= 0 && strstr(k, "self_attn.1."))
    return "ImageAdapter (architecture minigpt4 has none)";
  if (f == SRC_AD && c->a.llm.adapter_width <= 0 && strstr(k, "layernorm.weight"))
    return "re-trained RMSNorm gain (architecture minigpt4 keeps Vicuna's)";
  if (f == SRC_LLM && strncmp(k, "model.layers.", 13) == 0 && strstr(k, "layernorm.weight"))
    return "replaced by the adapter file's gain";
  if (f == SRC_LLM && llm_override(c, k))
    return "replaced by the adapter file's llama_model.* tensor (loaded over Vicuna's, strict=False)";
  return NULL;
}

static void report(conv *c, size_t n_missing) {
  FILE *r = c->o->report;
  if (!r) return;
  const char *paths[N_SRC] = {c->o->vit, c->o->qformer, c->o->llm, c->o->adapter};
  fprintf(r, "key coverage:\n");
  for (int f = 0; f < N_SRC; f++) {
    if (!c->s[f]) continue;
    size_t n = af_tsrc_count(c->s[f]), used = 0, ign = 0, unk = 0;
    for (size_t i = 0; i < n; i++) {
      const char *k = af_tsrc_get(c->s[f], i)->name;
      if (is_used(c, f, k))
        used++;
      else if (ignore_reason(c, f, k))
        ign++;
      else
        unk++;
    }
    fprintf(r, "  %-7s %s: %zu keys, %zu used, %zu ignored, %zu unknown\n", k_src_name[f], paths[f], n, used,
            ign, unk);
    /* one line per reason with a count and the first key, unknown keys one by one */
    const char *seen[16];
    size_t n_seen = 0;
    for (size_t i = 0; i < n; i++) {
      const char *k = af_tsrc_get(c->s[f], i)->name, *why;
      if (is_used(c, f, k)) continue;
      if (!(why = ignore_reason(c, f, k))) {
        fprintf(r, "    unknown  %s (not used)\n", k);
        continue;
      }
      size_t j;
      for (j = 0; j < n_seen && seen[j] != why; j++) {
      }
      if (j < n_seen || n_seen == 16) continue;
      seen[n_seen++] = why;
      size_t cnt = 0;
      for (size_t q = i; q < n; q++) {
        const char *kq = af_tsrc_get(c->s[f], q)->name;
        if (!is_used(c, f, kq) && ignore_reason(c, f, kq) == why) cnt++;
      }
      fprintf(r, "    ignored  %zu key%s: %s, e.g. %s\n", cnt, cnt == 1 ? "" : "s", why, k);
    }
  }
  fprintf(r, "  missing: %zu required tensor%s\n", n_missing, n_missing == 1 ? "" : "s");
}

/* The original runs the LLM in fp16 (mini_gpt4.py loads it with
 * torch_dtype=torch.float16, adapters and re-trained gains included, and
 * load_state_dict copies ArtGPT-4.pth into those fp16 parameters), so the
 * LLM's small fp32 tensors (RMSNorm gains, adapter biases) hold fp16 values
 * there: unless --type f32, they are rounded to fp16 (and stored as f32). */
static int llm_half_values(const conv *c, const af_tspec *t, int store) {
  return store == AF_GGML_F32 && c->o->type != AF_GGML_F32 &&
         (!strncmp(t->name, "blk.", 4) || !strcmp(t->name, "output_norm.weight"));
}

static void round_to_half(float *x, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) x[i] = af_f16_to_f32(af_f32_to_f16(x[i]));
}

static int write_tensor(conv *c, af_gguf_writer *w, const af_tspec *t, const mapping *m, float **buf,
                        size_t *cap) {
  uint64_t numel = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) numel *= t->ne[d];
  if (m->qkv_bias) {
    uint64_t wd = numel / 3;
    if (*cap < numel) {
      float *b = realloc(*buf, (size_t)numel * sizeof *b);
      if (!b) return af_err(AF_ERR_NOMEM, "out of memory");
      *buf = b, *cap = (size_t)numel;
    }
    int rc = af_tsrc_read_f32(m->src, *buf);
    if (!rc) rc = af_tsrc_read_f32(m->src2, *buf + 2 * wd);
    if (rc) return rc;
    memset(*buf + wd, 0, (size_t)wd * sizeof(float)); /* the release's K has no bias */
    return af_gguf_writer_append_f32(w, *buf, numel);
  }
  const af_tsrc_tensor *s = m->src;
  int64_t rows = s->ndim ? s->shape[0] : 1;
  uint64_t row = rows ? s->numel / (uint64_t)rows : 0;
  int store = af_model_store_type(t, c->o->type), half = llm_half_values(c, t, store);
  if (s->contiguous && s->numel &&
      ((store == AF_GGML_F16 && s->dtype == AF_TSRC_F16) ||
       (store == AF_GGML_F32 && s->dtype == AF_TSRC_F32 && !half))) {
    /* same encoding: copy the mapped bytes as they are.  Reading one row
     * first runs the storage's integrity (zip CRC) check, as every read does. */
    float one[1];
    int rc = row == 1 ? af_tsrc_read_rows_f32(s, 0, 1, one) : 0;
    if (row != 1) {
      float *tmp = malloc((size_t)row * sizeof *tmp);
      rc = tmp ? af_tsrc_read_rows_f32(s, 0, 1, tmp) : af_err(AF_ERR_NOMEM, "out of memory");
      free(tmp);
    }
    const uint8_t *bytes = rc ? NULL : af_tsrc_data(s); /* a deflated storage: its inflated copy */
    if (!rc && !bytes) rc = af_error_code() ? af_error_code() : AF_ERR_INVALID;
    for (uint64_t off = 0; !rc && off < s->nbytes; off += 64u << 20) {
      uint64_t k = s->nbytes - off < (64u << 20) ? s->nbytes - off : (64u << 20);
      rc = af_gguf_writer_append(w, bytes + off, (size_t)k);
    }
    return rc;
  }
  uint64_t per = row >= (16u << 20) ? 1 : (16u << 20) / row; /* <= 64 MiB of floats */
  if ((uint64_t)*cap < per * row && (uint64_t)rows * row > *cap) {
    uint64_t want = per * row < (uint64_t)rows * row ? per * row : (uint64_t)rows * row;
    float *b = realloc(*buf, (size_t)want * sizeof *b);
    if (!b) return af_err(AF_ERR_NOMEM, "out of memory");
    *buf = b, *cap = (size_t)want;
  }
  for (int64_t r = 0; r < rows; r += (int64_t)per) {
    int64_t k = rows - r < (int64_t)per ? rows - r : (int64_t)per;
    int rc = af_tsrc_read_rows_f32(s, r, k, *buf);
    if (!rc && half) round_to_half(*buf, (uint64_t)k * row);
    if (!rc) rc = af_gguf_writer_append_f32(w, *buf, (uint64_t)k * row);
    if (rc) return rc;
  }
  return 0;
}

int af_convert(const af_convert_opts *o) {
  conv c;
  memset(&c, 0, sizeof c);
  c.o = o;
  af_tspec *ts = NULL;
  mapping *maps = NULL;
  size_t nt = 0, n_missing = 0, cap = 0;
  af_gguf_writer *w = NULL;
  af_vocab voc = {0};
  float *buf = NULL;
  char path[4096];
  int rc = af_arch_load(o->arch, &c.a);
  const char *paths[N_SRC] = {o->vit, o->qformer, o->llm, o->adapter};
  for (int f = 0; !rc && f < N_SRC; f++)
    if (paths[f]) rc = af_tsrc_open(paths[f], &c.s[f]);
  if (rc) goto out;
  snprintf(path, sizeof path, "%s/tokenizer.model", o->llm);
  if ((rc = af_vocab_load_spm(path, &voc)) || (rc = derive(&c))) goto out;
  if ((rc = af_model_layout(&c.a, &ts, &nt))) goto out;
  if (!(maps = calloc(nt, sizeof *maps))) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < nt && !rc; i++) {
    mapping *m = &maps[i];
    if ((rc = source_of(&c, &ts[i], m))) break;
    if (!m->src || (m->qkv_bias && !m->src2)) {
      if (n_missing++ < 20 && o->report)
        fprintf(o->report, "missing: %s (source: %s file%s)\n", ts[i].name, k_src_name[m->file],
                why_missing(m->file));
      continue;
    }
    uint64_t numel = 1;
    for (uint32_t d = 0; d < ts[i].n_dims; d++) numel *= ts[i].ne[d];
    if (m->qkv_bias) {
      af_tspec one = ts[i];
      one.ne[0] /= 3;
      rc = check_shape(&c, &one, m->src, 0);
      if (!rc) rc = check_shape(&c, &one, m->src2, 0);
      if (!rc) rc = mark_used(&c, m->file, m->src2->name);
    } else {
      rc = check_shape(&c, &ts[i], m->src, numel);
    }
    if (!rc) rc = mark_used(&c, m->file, m->src->name);
  }
  if (rc) goto out;
  for (int f = 0; f < N_SRC; f++)
    if (c.n_used[f]) qsort(c.used[f], c.n_used[f], sizeof(char *), cmp_str);
  report(&c, n_missing);
  if (n_missing) {
    rc = af_err(AF_ERR_NOT_FOUND, "convert: %zu required tensor%s missing (listed above)", n_missing,
                n_missing == 1 ? " is" : "s are");
    goto out;
  }
  /* vocabulary: embedding rows beyond the tokenizer's pieces (Vicuna v0's [PAD]) */
  if (voc.n > (size_t)c.a.llm.vocab) {
    rc = af_err(AF_ERR_MISMATCH, "%s has %zu pieces but the embeddings have only %d rows", path, voc.n,
                c.a.llm.vocab);
    goto out;
  }
  size_t n_pieces = voc.n;
  static const char *const pad_name[] = {"[PAD]"};
  if ((rc = af_vocab_pad(&voc, (size_t)c.a.llm.vocab, pad_name, 1))) goto out;
  if (voc.pad < 0 && voc.n > n_pieces) voc.pad = (int)n_pieces;
  if ((rc = af_gguf_writer_new(&w)) || (rc = af_model_write_meta(w, &c.a, o->type)) ||
      (rc = af_vocab_write(w, &voc)) ||
      (o->demo && (rc = af_gguf_writer_set_str(w, "artflow.demo", o->demo))))
    goto out;
  /* --no-llm-base: the base LLM's tensors come from another file at run time */
  if (o->no_llm_base && (rc = af_gguf_writer_set_str(w, "artflow.llm_base", "separate"))) goto out;
  size_t n_written = 0;
  for (size_t i = 0; i < nt; i++) {
    if (o->no_llm_base && maps[i].file == SRC_LLM) continue;
    n_written++;
    if ((rc = af_gguf_writer_add_tensor(w, ts[i].name, af_model_store_type(&ts[i], o->type), ts[i].n_dims,
                                        ts[i].ne)))
      goto out;
  }
  if ((rc = af_gguf_writer_begin(w, o->out))) goto out;
  for (size_t i = 0; i < nt; i++) {
    if (o->no_llm_base && maps[i].file == SRC_LLM) continue;
    if ((rc = write_tensor(&c, w, &ts[i], &maps[i], &buf, &cap))) goto out;
    if (o->report && (i + 1) % 100 == 0) fprintf(o->report, "convert: %zu/%zu tensors\n", i + 1, nt);
  }
  rc = af_gguf_writer_finish(w);
  if (!rc && o->report)
    fprintf(o->report, "convert: wrote %s (%s, %zu tensors, vocab %d%s)\n", o->out,
            c.a.llm.adapter_width > 0 ? "artgpt4" : "minigpt4", n_written, c.a.llm.vocab,
            o->no_llm_base ? ", without the base LLM" : "");
out:
  af_gguf_writer_free(w); /* removes a partial output */
  free(buf);
  free(maps);
  free(ts);
  af_vocab_free(&voc);
  for (int f = 0; f < N_SRC; f++) {
    for (size_t i = 0; i < c.n_used[f]; i++) free(c.used[f][i]);
    free(c.used[f]);
    af_tsrc_close(c.s[f]);
  }
  return rc;
}
