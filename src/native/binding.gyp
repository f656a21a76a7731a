{
  "targets": [{
    "target_name": "snapfs",
    "sources": ["util.c", "files.c", "fuse.c", "fuse-stats.c", "unix.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
  }, {
    "target_name": "snapfs-launcher",
    "type": "executable",
    "sources": ["launcher.c"],
    "defines": ["SNAPFS_NODE_PATH=\"<!(node -p process.execPath)\""],
    "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
  }]
}
