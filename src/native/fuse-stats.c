/*
 * Per-session request statistics (see fuse-stats.h). Requests answered
 * while they are handled (reads and writes served in C, most of what
 * JavaScript answers) cost two clock reads and a few additions; the
 * others are kept open, in a list searched newest first, until answered.
 */
#include <stdlib.h>
#include <linux/fuse.h>
#include "fuse-stats.h"

/* Upper bounds of the latency buckets, in seconds: 50 µs to 1 s. */
static const double bounds[STATS_BOUNDS] = { 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1 };
/* Open requests kept for timing at most; beyond, a request is counted but not timed. */
#define MAX_OPEN 65536

static op_stats_t *slot(fuse_stats_t *st, uint32_t opcode) {
  return &st->ops[opcode < STATS_OPCODES ? opcode : 0];
}

static void observe(fuse_stats_t *st, uint32_t opcode, long ns, int error) {
  op_stats_t *o = slot(st, opcode);
  double seconds = (double) ns / 1e9;
  o->seconds += seconds;
  if (error != 0) o->errors++;
  int b = 0;
  while (b < STATS_BOUNDS && seconds > bounds[b]) b++;
  o->buckets[b]++;
}

void stats_begin(fuse_stats_t *st, uint64_t unique, uint32_t opcode, long start_ns) {
  slot(st, opcode)->count++;
  st->current = (open_request_t) { .unique = unique, .opcode = opcode, .start_ns = start_ns };
  st->current_open = true;
}

void stats_leave_open(fuse_stats_t *st) {
  if (!st->current_open) return;
  st->current_open = false;
  uint32_t op = st->current.opcode;
  /* Never answered: nothing to time. */
  if (op == FUSE_FORGET || op == FUSE_BATCH_FORGET || op == FUSE_INTERRUPT) return;
  if (st->n_open == st->cap_open) {
    size_t cap = st->cap_open == 0 ? 16 : st->cap_open * 2;
    if (cap > MAX_OPEN) return;
    open_request_t *grown = realloc(st->open, cap * sizeof *grown);
    if (grown == NULL) return;
    st->open = grown;
    st->cap_open = cap;
  }
  st->open[st->n_open++] = st->current;
}

void stats_answered(fuse_stats_t *st, uint64_t unique, int error, long now_ns) {
  if (st->current_open && st->current.unique == unique) {
    st->current_open = false;
    observe(st, st->current.opcode, now_ns - st->current.start_ns, error);
    return;
  }
  for (size_t i = st->n_open; i-- > 0;) {
    if (st->open[i].unique != unique) continue;
    observe(st, st->open[i].opcode, now_ns - st->open[i].start_ns, error);
    st->open[i] = st->open[--st->n_open];
    return;
  }
}

void stats_free(fuse_stats_t *st) {
  free(st->open);
  st->open = NULL;
  st->n_open = st->cap_open = 0;
}

napi_value stats_to_js(napi_env env, const fuse_stats_t *st) {
  napi_value rows;
  napi_create_array(env, &rows);
  uint32_t n = 0;
  for (uint32_t op = 0; op < STATS_OPCODES; op++) {
    const op_stats_t *o = &st->ops[op];
    if (o->count == 0) continue;
    napi_value row, v;
    napi_create_array_with_length(env, 4 + STATS_BUCKETS, &row);
    double head[4] = { op, o->count, o->errors, o->seconds };
    for (uint32_t i = 0; i < 4; i++) {
      napi_create_double(env, head[i], &v);
      napi_set_element(env, row, i, v);
    }
    for (uint32_t b = 0; b < STATS_BUCKETS; b++) {
      napi_create_double(env, o->buckets[b], &v);
      napi_set_element(env, row, 4 + b, v);
    }
    napi_set_element(env, rows, n++, row);
  }
  return rows;
}

napi_value stats_bounds_to_js(napi_env env) {
  napi_value arr, v;
  napi_create_array_with_length(env, STATS_BOUNDS, &arr);
  for (uint32_t i = 0; i < STATS_BOUNDS; i++) {
    napi_create_double(env, bounds[i], &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}
