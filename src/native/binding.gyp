{
  "targets": [{
    "target_name": "snapfs_sys",
    "sources": ["sys.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
  }]
}
