/*
 * What a FUSE session's requests cost, by operation: how many, how many
 * answered with an error, their time from being read off the device to
 * being answered, and a histogram of it. Kept per session for `snapfs
 * serve --metrics-address`; reading it takes nothing from serving.
 */
#ifndef SNAPFS_FUSE_STATS_H
#define SNAPFS_FUSE_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <node_api.h>

/* Opcodes below this are counted apart; the rare others together, as 0. */
#define STATS_OPCODES 64
/* Latency buckets: STATS_BOUNDS upper bounds, then everything slower. */
#define STATS_BOUNDS 11
#define STATS_BUCKETS (STATS_BOUNDS + 1)

typedef struct {
  double count;
  double errors;
  double seconds;
  double buckets[STATS_BUCKETS];
} op_stats_t;

/* A request answered later, by JavaScript once its work is done. */
typedef struct {
  uint64_t unique;
  uint32_t opcode;
  long start_ns;
} open_request_t;

typedef struct {
  op_stats_t ops[STATS_OPCODES];
  /* The request being handled now, until it is answered or left open. */
  open_request_t current;
  bool current_open;
  open_request_t *open;
  size_t n_open, cap_open;
} fuse_stats_t;

/* A request read off the device, at start_ns: it is the current one. */
void stats_begin(fuse_stats_t *st, uint64_t unique, uint32_t opcode, long start_ns);
/* The current request was not answered while it was handled: it stays open (unless it is one never answered). */
void stats_leave_open(fuse_stats_t *st);
/* The answer to request unique, at now_ns; error is 0 or a negative errno. */
void stats_answered(fuse_stats_t *st, uint64_t unique, int error, long now_ns);
void stats_free(fuse_stats_t *st);
/* [[opcode, count, errors, seconds, bucket…], …] for the opcodes seen. */
napi_value stats_to_js(napi_env env, const fuse_stats_t *st);
/* The buckets' upper bounds in seconds, for JavaScript to name them. */
napi_value stats_bounds_to_js(napi_env env);

#endif
