/*
 * fuzz.h - shared bits of the libFuzzer targets in tests/fuzz/ (see docs/fuzzing.md).
 *
 * Each target is one .c file defining LLVMFuzzerTestOneInput. A target checks the invariants
 * of the parser it drives with FUZZ_ASSERT/FUZZ_ASSERTF, which print what broke and abort(): an
 * invariant violation is then a crash like any other, and libFuzzer saves the input that caused
 * it (the reproducer) and prints its path. Sanitizers (ASan, UBSan, LeakSanitizer) catch the
 * rest.
 */
#ifndef WEFT_TESTS_FUZZ_H
#define WEFT_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The entry points libFuzzer calls (declared here for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Abort with the failed condition when cond is false. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FUZZ_ASSERT failed: %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The same with a printf-style explanation (format and arguments after cond). */
#define FUZZ_ASSERTF(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FUZZ_ASSERT failed: %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
