/* fileio.h — whole-file reading and path joining, internal to the library (tests may use them too). */
#ifndef KILN_COMMON_FILEIO_H
#define KILN_COMMON_FILEIO_H

#include <stddef.h>

#include "kiln.h"

/* Reads a whole file into a NUL-terminated malloc'd buffer. If the file is a git "symlink stored as text"
 * (a short file whose whole content is a relative path to an existing file, as checkouts with
 * core.symlinks=false leave them), the target is read instead. Only a regular file is read (a directory,
 * FIFO or device is a one-line error, never a hang), and no more than the size it had when opened. */
char *kiln_read_file(const char *path, size_t *len, kiln_err *err);
/* Maps a regular file read-only (a directory, FIFO or device is a one-line error, never a hang): *map is
 * NULL for an empty file. munmap(*map, *size) when done. */
int kiln_map_file(const char *path, void **map, size_t *size, kiln_err *err);
/* Maps path (kiln_map_file) and hands its bytes to parse(obj, map, size, path, err), the container's
 * parser; on parse's failure the mapping goes again. 0 with *map / *size set (obj now owns the mapping), or
 * -1 (err). The one map-then-parse of the safetensors and GGUF readers. */
typedef int (*kiln_parse_fn)(void *obj, const void *buf, size_t size, const char *path, kiln_err *err);
int kiln_map_parse(const char *path, kiln_parse_fn parse, void *obj, void **map, size_t *size, kiln_err *err);
/* dir + "/" + name, malloc'd. */
char *kiln_path_join(const char *dir, const char *name);
/* Resolves a path that may be a git text-symlink (see kiln_read_file) to the real file; malloc'd. */
char *kiln_resolve_path(const char *path);

#endif
