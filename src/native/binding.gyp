{
  "targets": [{
    "target_name": "snapfs",
    "sources": ["util.c", "files.c", "fuse.c", "unix.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
  }]
}
