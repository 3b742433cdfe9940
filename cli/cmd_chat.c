/* artflow chat: a multi-turn conversation about one or more images, as the
 * original demo's Chat does it (stages/describer.h, af_chat_*): every image is
 * run through the vision path once, then each question re-embeds the whole
 * history.  Interactive on a terminal; otherwise one question per stdin line
 * (plain answers followed by a blank line, or JSON Lines with --json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cl/runtime.h"
#include "cli/cli.h"
#include "stages/describer.h"

static const char usage[] =
    "usage: artflow chat IMAGE... --model MODEL.gguf [options]\n"
    "\n"
    "Talks about the images with the model, turn after turn, as the original demo's\n"
    "Chat does: each image becomes one '<Img><ImageHere></Img>' message (several images:\n"
    "several messages, the question joins the last), and every turn re-embeds the whole\n"
    "conversation.  On a terminal: type a question after the '>>> ' marker; the answer is\n"
    "streamed; /reset starts again with the same images, /quit or Ctrl-D ends.  Otherwise\n"
    "each line of stdin is one question and each answer is printed followed by a blank\n"
    "line (or one JSON object per line with --json).\n"
    "\n"
    "options:\n"
    "  --model FILE          model file made by 'artflow convert' or 'artflow mkmodel' (required)\n"
    "  --llm FILE            a GGUF with the base LLM (e.g. a llama.cpp Vicuna file); tensors and\n"
    "                        metadata are taken from --model first, then from FILE\n"
    "  --question TEXT       ask TEXT first (then go on with stdin)\n"
    "  --greedy              pick the most likely token each step (deterministic)\n"
    "  --temperature T       sampling temperature (default 1.0)\n"
    "  --top-k K             keep the K most likely tokens (default 50; 0 = off)\n"
    "  --top-p P             nucleus sampling mass (default 0.9)\n"
    "  --seed S              random seed for sampling (default 0)\n"
    "  --max-new-tokens N    longest answer in tokens (default 300)\n"
    "  --max-length N        conversation + answer positions kept (default 2000, the original's);\n"
    "                        older positions are left out with a warning\n"
    "  --json                one JSON object per turn: {\"turn\",\"question\",\"answer\",\"ids\",\"positions\"}\n"
    "  --dump DIR            write DIR/turn<N>/{prompt_ids,ids,answer,info}.txt per turn\n"
    "  --device D            OpenCL device index or name substring\n";

/* Reads one line (without its newline) into *buf; 0 at end of input. */
static int read_line(FILE *in, char **buf, size_t *cap) {
  ssize_t n = getline(buf, cap, in);
  if (n < 0) return 0;
  while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = 0;
  return 1;
}

int af_cmd_chat(int argc, char **argv) {
  af_describe_opts o;
  af_describe_opts_default(&o);
  af_cli_image_args a;
  int pr = af_cli_image_args_parse(argc, argv, "chat", usage, 1, &o, &a);
  if (pr >= 0) return pr;
  const char *model = a.model, *device = a.device, *dump = a.dump, *first = a.question;
  int json = a.json;
  int n_images = argc - a.first_image, tty = isatty(0) && !json;

  af_cl *cl = NULL;
  af_cli_embedder e = {0};
  af_describer *llm = NULL;
  af_chat *chat = NULL;
  float **proj = calloc((size_t)n_images, sizeof *proj);
  char *line = NULL;
  size_t cap = 0;
  int rc = proj ? af_cl_open(&cl, device) : af_err(AF_ERR_NOMEM, "out of memory"), turn = 0, failures = 0;
  if (!rc) rc = af_cli_embedder_open(cl, model, &e);
  if (!rc) rc = af_describer_new(cl, model, &o, &llm);
  size_t np = e.Q * e.L; /* each image's embeddings, kept for every turn */
  for (int i = 0; !rc && i < n_images; i++) {
    if (!(proj[i] = malloc(sizeof(float) * np))) rc = af_err(AF_ERR_NOMEM, "out of memory");
    if (!rc) rc = af_cli_embed(&e, argv[a.first_image + i]);
    if (!rc) memcpy(proj[i], e.po, sizeof(float) * np);
  }
  /* the vision path is done for good: its weights, buffers and mapped pages
   * go before the conversation starts */
  int n_q = (int)e.Q;
  af_cli_embedder_close(&e);
  if (!rc) rc = af_chat_new(llm, (const float *const *)proj, n_images, n_q, &chat);
  if (rc) {
    rc = af_cli_fail(rc, NULL);
    goto out;
  }
  if (tty)
    fprintf(stderr, "artflow chat: %d image%s; ask a question (/reset starts again, /quit or Ctrl-D ends)\n", n_images,
            n_images == 1 ? "" : "s");
  for (;;) {
    const char *question = NULL;
    if (first) {
      question = first, first = NULL;
    } else {
      if (tty) fputs(">>> ", stdout), fflush(stdout);
      if (!read_line(stdin, &line, &cap)) {
        if (tty) fputc('\n', stdout); /* Ctrl-D: the shell prompt starts on its own line */
        break;
      }
      question = line;
    }
    if (!strcmp(question, "/quit")) break;
    if (!strcmp(question, "/reset")) {
      if ((rc = af_chat_reset(chat))) break;
      if (tty) fputs("(the conversation starts again)\n", stdout);
      continue;
    }
    if (!*question) continue; /* the demo refuses empty input */
    char dir[4096] = "", *answer = NULL;
    int32_t *ids = NULL;
    int n_ids = 0, positions = 0;
    turn++;
    if (dump) snprintf(dir, sizeof dir, "%s/turn%d", dump, turn);
    int r = af_chat_turn(chat, question, json ? NULL : stdout, dump ? dir : NULL, &answer, &ids, &n_ids, &positions);
    if (!r && json) {
      cJSON *j = cJSON_CreateObject();
      cJSON_AddNumberToObject(j, "turn", turn);
      cJSON_AddStringToObject(j, "question", question);
      cJSON_AddStringToObject(j, "answer", answer);
      cJSON *arr = cJSON_AddArrayToObject(j, "ids");
      for (int i = 0; i < n_ids; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
      cJSON_AddNumberToObject(j, "positions", positions);
      char *s = cJSON_PrintUnformatted(j);
      if (s) printf("%s\n", s);
      free(s);
      cJSON_Delete(j);
    } else if (!r) {
      fputs(tty ? "\n" : "\n\n", stdout);
    } else {
      failures++;
      if (!json) fputc('\n', stdout);
      fprintf(stderr, "artflow chat: turn %d: %s\n", turn, af_error_message()[0] ? af_error_message() : af_strerror(r));
      af_error_clear();
    }
    fflush(stdout);
    free(answer);
    free(ids);
  }
  rc = rc ? af_cli_fail(rc, NULL) : failures ? AF_EXIT_FAIL : AF_EXIT_OK;
out:
  free(line);
  for (int i = 0; proj && i < n_images; i++) free(proj[i]);
  free(proj);
  af_chat_free(chat);
  af_describer_free(llm);
  af_cli_embedder_close(&e);
  af_cl_close(cl);
  return rc;
}
