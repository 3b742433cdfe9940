/* Tag vocabularies (the YAML files in config/vocabularies/, `artflow tag --vocab`,
 * a pipeline task's `vocabulary:`): the labels a tagging task scores and the
 * question it asks.
 *
 *   name: wikiart-genres
 *   question: "Which genre is this artwork?"
 *   mode: choose                 # choose (one of the labels) | yesno (each label on its own)
 *   labels:
 *     - portrait                 # a plain string: label = id
 *     - {id: still_life, label: still life, uri: "", aliases: [nature morte]}
 *
 * A labels file (`--labels-file`) is one label per line (blank lines and
 * lines starting with '#' skipped), no question, mode choose.  Labels are
 * unique (and so are ids); a yesno question holds "{label}". */
#ifndef AF_FORMATS_TAGVOCAB_H
#define AF_FORMATS_TAGVOCAB_H

typedef enum af_tag_mode { AF_TAG_CHOOSE = 0, AF_TAG_YESNO = 1 } af_tag_mode;

typedef struct af_tag_label {
  char *id;       /* the vocabulary's id (the label when none is given) */
  char *label;    /* the text scored */
  char *uri;      /* authority URI, or NULL */
  char **aliases; /* other texts of the same label (scored too; the best counts) */
  int n_aliases;
} af_tag_label;

typedef struct af_tagvocab {
  char *path;     /* the file it came from */
  char *name;     /* `name:`, else the file name without .yaml */
  char *question; /* `question:`, or NULL */
  af_tag_mode mode;
  af_tag_label *labels;
  int n_labels;
} af_tagvocab;

/* Reads a vocabulary YAML file.  Bad input: AF_ERR_FORMAT with "FILE:LINE:
 * cause" (AF_ERR_IO when unreadable).  *out freed with af_tagvocab_free. */
int af_tagvocab_load(const char *path, af_tagvocab **out);
/* Reads a labels file (one per line). */
int af_tagvocab_load_lines(const char *path, af_tagvocab **out);
void af_tagvocab_free(af_tagvocab *v);
/* A vocabulary by name or path: a spec with a '/' or ending in .yaml/.yml is
 * a file (a relative one joined onto base_dir when base_dir is given), any
 * other a shipped vocabulary's name, NAME.yaml in the vocabularies folder
 * (core/datadir.h: ARTFLOW_VOCAB_DIR, ...).  A missing name lists the
 * folder's vocabularies. */
int af_tagvocab_open(const char *spec, const char *base_dir, af_tagvocab **out);

/* "choose" / "yesno"; the mode of a name (-1 when neither). */
const char *af_tag_mode_name(af_tag_mode m);
int af_tag_mode_parse(const char *s);

#endif
