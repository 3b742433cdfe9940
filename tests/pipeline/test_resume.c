/* Kill-and-resume loop for the storage side of `artflow run --resume`: a
 * child process runs list source -> (journal filter) -> jsonl + csv sinks ->
 * journal commit, exactly in the order the scheduler uses, and the parent
 * SIGKILLs it at random moments, then resumes, until one run finishes.
 * Afterwards (and after every kill) the outputs must hold only whole
 * records, and in the end every item exactly once in every sink. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/csv.h"
#include "io_harness.h"
#include "pipeline/pipeline.h"

extern const af_stage_desc af_stage_src_list, af_stage_jsonl, af_stage_csv;

#define N_ITEMS 600

static char dir[4096], list[4200], jpath[4200], cpath[4200], journal[4200];

/* The child: one (possibly resumed) run.  Exits 0 when all items are done. */
static int child_run(int resume, unsigned seed) {
  srand(seed);
  char s_list[4300], s_j[4300], s_c[4300];
  snprintf(s_list, sizeof s_list, "path=%s", list);
  snprintf(s_j, sizeof s_j, "path=%s", jpath);
  snprintf(s_c, sizeof s_c, "path=%s", cpath);
  const char *ls[] = {s_list, NULL}, *js[] = {s_j, "fsync=none", NULL},
             *cs[] = {s_c, "fsync=none", "columns=id,status,text.n", NULL};
  af_stage_ctx ctx = io_ctx("t", NULL, resume);
  void *lc = io_config(&af_stage_src_list, ls), *jc = io_config(&af_stage_jsonl, js),
       *cc = io_config(&af_stage_csv, cs);
  void *src = NULL, *js_ = NULL, *cs_ = NULL;
  af_journal *j = NULL;
  if (af_journal_open(journal, resume, NULL, &j) || af_stage_src_list.create(&ctx, lc, &src) ||
      af_stage_jsonl.create(&ctx, jc, &js_) || af_stage_csv.create(&ctx, cc, &cs_)) {
    fprintf(stderr, "child setup: %s\n", af_error_message());
    return 3;
  }
  af_item *batch[8];
  int nb = 0, want = 1 + rand() % 7, eos = 0;
  while (!eos || nb) {
    af_item *it = NULL;
    if (!eos && af_stage_src_list.next(src, &ctx, &it) != AF_FLOW_OK) eos = 1;
    if (it && af_journal_is_done(j, it->id)) {
      af_item_free(it);
      continue;
    }
    if (it) {
      char n[16];
      snprintf(n, sizeof n, "%d", atoi(it->id + 4) * 7);
      af_item_set_text(it, "n", n);
      if (atoi(it->id + 4) % 13 == 0) af_item_fail(it, "t", "%s: bad, on purpose", it->id);
      batch[nb++] = it;
    }
    if (nb == want || (eos && nb)) {
      if (af_stage_jsonl.process(js_, &ctx, batch, nb) != AF_FLOW_OK ||
          af_stage_csv.process(cs_, &ctx, batch, nb) != AF_FLOW_OK || af_journal_commit(j, batch, nb))
        return 4;
      for (int i = 0; i < nb; i++) af_item_free(batch[i]);
      nb = 0;
      want = 1 + rand() % 7;
      if (rand() % 4 == 0) usleep((useconds_t)(rand() % 300));
    }
  }
  af_stage_jsonl.destroy(js_);
  af_stage_csv.destroy(cs_);
  af_stage_src_list.destroy(src);
  af_journal_close(j);
  io_config_free(&af_stage_src_list, lc);
  io_config_free(&af_stage_jsonl, jc);
  io_config_free(&af_stage_csv, cc);
  return 0;
}

typedef struct seen {
  int count[N_ITEMS];
  int lines, bad;
} seen;

static int jsonl_line(const char *line, size_t len, void *user) {
  seen *s = user;
  cJSON *o = cJSON_ParseWithLength(line, len);
  const cJSON *id = cJSON_GetObjectItem(o, "id");
  if (!cJSON_IsString(id) || strncmp(id->valuestring, "img-", 4)) {
    s->bad++;
  } else {
    int k = atoi(id->valuestring + 4);
    if (k >= 0 && k < N_ITEMS) s->count[k]++;
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(o, "status"));
    if (!st || strcmp(st, k % 13 == 0 ? "error" : "ok")) s->bad++;
  }
  s->lines++;
  cJSON_Delete(o);
  return 0;
}

/* Checks the jsonl file: every complete line a whole record; returns the
 * number of items present at least once; sets *dups. */
static int check_jsonl(int *dups, int *bad) {
  seen s = {0};
  af_lines_scan(jpath, jsonl_line, &s);
  int present = 0;
  *dups = 0;
  for (int i = 0; i < N_ITEMS; i++) {
    present += s.count[i] > 0;
    *dups += s.count[i] > 1;
  }
  *bad = s.bad;
  return present;
}

static void check_csv_final(void) {
  FILE *fp = fopen(cpath, "rb");
  CHECK(fp != NULL);
  if (!fp) return;
  af_csv_reader *r = af_csv_reader_new(fp, cpath);
  char **f;
  int n, rowsn = 0, count[N_ITEMS] = {0}, bad = 0;
  int64_t line;
  while (af_csv_next(r, &f, &n, &line) == 1) {
    if (rowsn++ == 0) continue;
    int k = atoi(f[0] + 4);
    if (n != 3 || k < 0 || k >= N_ITEMS) {
      bad++;
      continue;
    }
    count[k]++;
    if (k % 13 && atoi(f[2]) != 7 * k) bad++;
  }
  af_csv_reader_free(r);
  fclose(fp);
  int once = 0;
  for (int i = 0; i < N_ITEMS; i++) once += count[i] == 1;
  CHECK_MSG(once == N_ITEMS && bad == 0 && rowsn == N_ITEMS + 1, "csv: %d once, %d bad, %d rows", once, bad,
            rowsn);
}

typedef struct jdone {
  int count[N_ITEMS];
} jdone;

static int journal_line(const char *line, size_t len, void *user) {
  jdone *d = user;
  if (len > 6 && line[0] == 'D') {
    int k = atoi(line + 6);
    if (k >= 0 && k < N_ITEMS) d->count[k]++;
  }
  return 0;
}

int main(int argc, char **argv) {
  unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) : (unsigned)time(NULL);
  printf("seed %u\n", seed);
  srand(seed);
  snprintf(dir, sizeof dir, "%s", af_test_tmpdir());
  snprintf(list, sizeof list, "%s/list.txt", dir);
  snprintf(jpath, sizeof jpath, "%s/out/records.jsonl", dir);
  snprintf(cpath, sizeof cpath, "%s/out/records.csv", dir);
  snprintf(journal, sizeof journal, "%s/out/records.journal", dir);
  FILE *fp = fopen(list, "w");
  for (int i = 0; i < N_ITEMS; i++) fprintf(fp, "img-%d\n", i);
  fclose(fp);

  int kills = 0, finished = 0, runs = 0, midway = 0, last_present = 0;
  for (; runs < 400 && !finished; runs++) {
    pid_t pid = fork();
    if (pid == 0) _exit(child_run(runs > 0, seed + (unsigned)runs));
    /* kill early and often; the delay grows so a run eventually finishes */
    usleep((useconds_t)(rand() % (200 + 200 * runs)));
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st)) {
      CHECK_MSG(WEXITSTATUS(st) == 0, "child exit %d", WEXITSTATUS(st));
      finished = WEXITSTATUS(st) == 0;
      if (WEXITSTATUS(st)) break;
    } else {
      kills++;
    }
    int dups, bad, present = check_jsonl(&dups, &bad);
    /* a kill that landed while records were being written (progress made,
     * work left): what the loop is for */
    if (!finished && present > last_present && present < N_ITEMS) midway++;
    last_present = present;
    CHECK_MSG(dups == 0 && bad == 0, "after run %d: %d duplicated ids, %d bad lines", runs, dups, bad);
    if (dups || bad) break;
  }
  printf("%d runs, %d killed, %d of them mid-run\n", runs, kills, midway);
  CHECK(finished);
  CHECK(midway >= 2); /* typically 5-15 */
  int dups, bad, present = check_jsonl(&dups, &bad);
  CHECK_MSG(present == N_ITEMS && dups == 0 && bad == 0, "jsonl: %d present, %d dups, %d bad", present, dups,
            bad);
  check_csv_final();
  jdone d = {{0}};
  af_lines_scan(journal, journal_line, &d);
  int done = 0;
  for (int i = 0; i < N_ITEMS; i++) done += d.count[i] >= 1;
  CHECK(done == N_ITEMS);
  /* one more resume: nothing left to do, nothing written */
  pid_t pid = fork();
  if (pid == 0) _exit(child_run(1, seed));
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  present = check_jsonl(&dups, &bad);
  CHECK(present == N_ITEMS && dups == 0);
  return af_test_done("test_resume");
}
