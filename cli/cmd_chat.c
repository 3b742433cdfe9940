/* artflow chat: a multi-turn conversation about one or more images, as the
 * original demo's Chat does it (net/chat.h; --dump by cli/chat_out.c):
 * every image is run once through the vision path on the pipeline engine
 * (cli/images.c), then each question re-embeds the whole history.  The
 * generation flags are the llm stage's parameter rows (cli/flags.c).
 * Interactive on a terminal; otherwise one question per stdin line (plain
 * answers followed by a blank line, or JSON Lines with --json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cl/runtime.h"
#include "cli/chat_out.h"
#include "cli/cli.h"
#include "core/iofile.h"
#include "stages/stages.h"

static const char head[] =
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
    "  --question TEXT       ask TEXT first (then go on with stdin)\n";
static const char tail[] =
    "  --json                one JSON object per turn: "
    "{\"turn\",\"question\",\"answer\",\"ids\",\"positions\"}\n"
    "  --dump DIR            write DIR/turn<N>/{prompt_ids,ids,answer,info}.txt per turn\n"
    "  --device D            OpenCL device index or name substring\n"
    "\n"
    "The generation flags are the llm stage's parameters ('artflow inspect stage llm');\n"
    "--max-length counts the whole conversation: older positions are left out with a warning.\n";
static const char *const skip[] = {"details", "question", "tasks", "interleave", NULL};

/* Reads one line (without its newline) into *buf; 0 at end of input. */
static int read_line(FILE *in, char **buf, size_t *cap) {
  ssize_t n = getline(buf, cap, in);
  if (n < 0) return 0;
  while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = 0;
  return 1;
}

int af_cmd_chat(int argc, char **argv) {
  af_cli_flags f;
  struct {
    const char *model, *llm, *device, *dump, *first;
    int json;
    const char **images;
    int n_images;
  } a = {0};
  int rc = af_cli_flags_init(&f, "llm", skip);
  char *usage = rc ? NULL : af_cli_usage_text(head, &f, NULL, tail);
  a.images = calloc((size_t)argc, sizeof *a.images);
  const af_cli_opt opts[] = {{"--model", &a.model, NULL},
                             {"--llm", &a.llm, NULL},
                             {"--dump", &a.dump, NULL},
                             {"--device", &a.device, NULL},
                             {"--question", &a.first, NULL},
                             {"--json", NULL, &a.json},
                             {NULL, NULL, NULL}};
  int pr = usage && a.images ? af_cli_parse(argc, argv, "chat", usage, opts, &f, a.images, &a.n_images)
                             : af_cli_fail(rc ? rc : AF_ERR_NOMEM, "chat");
  if (pr < 0 && !a.model) pr = af_cli_usage_error("chat", usage, "--model is required");
  if (pr < 0 && !a.n_images) pr = af_cli_usage_error("chat", usage, "no image given");
  if (pr >= 0) {
    af_cli_flags_free(&f), free(usage), free(a.images);
    return pr;
  }
  af_gen_opts o;
  af_llm_gen_opts(f.config, &o);
  o.llm_model = a.llm;
  const char *dump = a.dump, *first = a.first;
  int json = a.json, n_images = a.n_images, tty = isatty(0) && !json;

  af_cl *cl = NULL;
  af_generator *llm = NULL;
  af_chat *chat = NULL;
  float **proj = calloc((size_t)n_images, sizeof *proj);
  char *line = NULL;
  size_t cap = 0;
  int turn = 0, failures = 0;
  /* the vision path of every image on the pipeline engine; its device, weights
   * and buffers are gone before the conversation starts */
  af_cli_images vis = {.cmd = "chat",
                       .model = a.model,
                       .llm_model = a.llm,
                       .device = a.device,
                       .images = a.images,
                       .n_images = n_images,
                       .proj = proj};
  rc = proj ? af_cli_images_run(&vis) : af_cli_fail(AF_ERR_NOMEM, "chat");
  if (rc) goto out;
  rc = af_cl_open(&cl, a.device);
  if (!rc) rc = af_generator_new(cl, a.model, &o, &llm);
  if (!rc) rc = af_chat_new(llm, (const float *const *)proj, n_images, vis.proj_rows, &chat);
  if (rc) {
    rc = af_cli_fail(rc, NULL);
    goto out;
  }
  if (tty)
    fprintf(stderr, "artflow chat: %d image%s; ask a question (/reset starts again, /quit or Ctrl-D ends)\n",
            n_images, n_images == 1 ? "" : "s");
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
    char dir[4096] = "";
    turn++;
    if (dump) snprintf(dir, sizeof dir, "%s/turn%d", dump, turn);
    af_cli_chat_out co = {json ? NULL : stdout, dump ? dir : NULL};
    af_chat_io io;
    af_chat_result res;
    af_cli_chat_io(&co, &io);
    int r = af_chat_turn(chat, question, &io, &res);
    if (!r && json) {
      cJSON *j = cJSON_CreateObject();
      cJSON_AddNumberToObject(j, "turn", turn);
      af_json_add_text(j, "question", question, "question_bytes");
      af_json_add_text(j, "answer", res.answer, "answer_bytes");
      cJSON *arr = cJSON_AddArrayToObject(j, "ids");
      for (int i = 0; i < res.n_ids; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(res.ids[i]));
      cJSON_AddNumberToObject(j, "positions", res.positions);
      char *s = cJSON_PrintUnformatted(j);
      if (s) printf("%s\n", s);
      free(s);
      cJSON_Delete(j);
    } else if (!r) {
      fputs(tty ? "\n" : "\n\n", stdout);
    } else {
      failures++;
      if (!json) fputc('\n', stdout);
      fprintf(stderr, "artflow chat: turn %d: %s\n", turn,
              af_error_message()[0] ? af_error_message() : af_strerror(r));
      af_error_clear();
    }
    fflush(stdout);
    af_chat_result_free(&res);
  }
  rc = rc ? af_cli_fail(rc, NULL) : failures ? AF_EXIT_FAIL : AF_EXIT_OK;
out:
  free(line);
  for (int i = 0; proj && i < n_images; i++) free(proj[i]);
  free(proj);
  af_chat_free(chat);
  af_generator_free(llm);
  af_cl_close(cl);
  af_cli_flags_free(&f), free(usage), free(a.images);
  return rc;
}
