/*
 * unit.h - the unit-test harness: one runner per module directory under tests/unit/.
 *
 * Each case runs in a forked child with a timeout (UNIT_TIMEOUT seconds, default 20), so a crash
 * or a hang fails that case only. Assertions print both operands. A case that cannot run here
 * calls SKIP("why") (it prints "SKIP case: why" and ends the case); a skip is neither a pass nor
 * a failure. The runner ends with the line "N passed, N failed[, N skipped]" that tests/run.sh
 * adds up (run.sh fails on a skip that is not on tests/skip-allow.txt). `runner NAME` runs only
 * the case NAME; a NAME that matches no case fails the runner.
 * A runner of several files keeps UNIT_MAIN in one of them and declares the others' cases in a
 * header of its own (tests/unit/core/core_test.h).
 *
 *   static void t_adds(void) { CHECK_INT(1 + 1, 2); }
 *   UNIT_MAIN(UNIT(t_adds))
 */
#ifndef WEFT_TESTS_UNIT_H
#define WEFT_TESTS_UNIT_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct unit_case {
    const char *name;
    void (*fn)(void);
};

/* One counter per runner, shared by every file of a multi-file runner (see tests/unit/core/). */
__attribute__((weak)) int unit__failures;
__attribute__((weak)) const char *unit__current; /* the running case's name (in the child) */

/* The child's exit status for a skipped case (the convention of automake's test drivers). */
#define UNIT_SKIP_STATUS 77

#define UNIT(f)                                                                                    \
    {                                                                                              \
#f, f                                                                                      \
    }

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
            unit__failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long unit__a = (long long)(a), unit__b = (long long)(b);                              \
        if (unit__a != unit__b) {                                                                  \
            fprintf(stderr, "  %s:%d: %s == %s: %lld != %lld\n", __FILE__, __LINE__, #a, #b,       \
                    unit__a, unit__b);                                                             \
            unit__failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *unit__a = (a), *unit__b = (b);                                                 \
        if (!unit__a || !unit__b || strcmp(unit__a, unit__b) != 0) {                               \
            fprintf(stderr, "  %s:%d: %s == %s:\n    \"%s\"\n != \"%s\"\n", __FILE__, __LINE__,    \
                    #a, #b, unit__a ? unit__a : "(null)", unit__b ? unit__b : "(null)");           \
            unit__failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Stop the case at once (after a failed precondition). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond);           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Skip the current case: printf-style reason. A case that already failed stays failed. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        printf("SKIP %s: ", unit__current ? unit__current : "?");                                  \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        exit(unit__failures ? 1 : UNIT_SKIP_STATUS);                                               \
    } while (0)

static inline int unit__run(const struct unit_case *cases, size_t n, int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    const char *t = getenv("UNIT_TIMEOUT");
    unsigned timeout = t ? (unsigned)atoi(t) : 20;

    for (size_t i = 0; i < n; i++) {
        int status = 0;
        pid_t pid;

        if (only && strcmp(only, cases[i].name) != 0)
            continue;
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid == 0) {
            unit__current = cases[i].name;
            alarm(timeout);
            cases[i].fn();
            fflush(stdout);
            _exit(unit__failures ? 1 : 0);
        }
        if (pid < 0 || waitpid(pid, &status, 0) < 0) {
            perror("fork/waitpid");
            failed++;
            continue;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("PASS %s\n", cases[i].name);
            passed++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == UNIT_SKIP_STATUS) {
            skipped++; /* the child printed its SKIP line */
        } else {
            if (WIFSIGNALED(status))
                printf("FAIL %s (signal %d%s)\n", cases[i].name, WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? ", timeout" : "");
            else
                printf("FAIL %s\n", cases[i].name);
            failed++;
        }
    }
    if (only && passed + failed + skipped == 0) {
        printf("FAIL %s: no such case\n", only);
        failed++;
    }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define UNIT_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const struct unit_case unit__cases[] = {__VA_ARGS__};                               \
        return unit__run(unit__cases, sizeof(unit__cases) / sizeof(unit__cases[0]), argc, argv);   \
    }

#endif
