/*
 * What the native files of snapfs share: argument helpers and Node-style
 * errors (code, errno, syscall) for N-API functions.
 */
#ifndef SNAPFS_NATIVE_H
#define SNAPFS_NATIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

#define PATH_BYTES 4096
/* A name of one directory entry, with its NUL. */
#define NAME_BYTES 256

/* The error `code: strerror, syscall 'what'` (what may be NULL), with code, errno and syscall set. */
napi_value errno_error(napi_env env, int err, const char *syscall, const char *what, size_t what_len);
/* Throws errno_error(...) and returns NULL. */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what, size_t what_len);
napi_value throw_type(napi_env env, const char *message);

/* Fills argv with exactly `want` arguments, else throws. */
bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
int64_t get_int64(napi_env env, napi_value v);
bool get_bool(napi_env env, napi_value v);

/*
 * A string or Buffer as NUL-terminated bytes in buf (size bytes at most,
 * NUL included); *len gets its length. Refuses NUL inside. Throws and
 * returns false otherwise.
 */
bool get_bytes(napi_env env, napi_value v, char *buf, size_t size, size_t *len);

/*
 * One directory entry's name: what get_bytes takes, but neither empty nor
 * `.` or `..`, and without `/`, so that an *at call with it can only ever
 * reach an entry of that very directory. With allow_empty, "" (the
 * directory descriptor itself) is taken too.
 */
bool get_name(napi_env env, napi_value v, char *buf, size_t *len, bool allow_empty);

/* A Buffer copy of len bytes. */
napi_value new_buffer(napi_env env, const void *data, size_t len);

void export_function(napi_env env, napi_value exports, const char *name, napi_callback fn);

/* The parts of the addon, each adding its functions to exports. */
void init_files(napi_env env, napi_value exports);
void init_fuse(napi_env env, napi_value exports);
void init_unix(napi_env env, napi_value exports);

#endif
