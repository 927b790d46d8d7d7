#include <string.h>

#include "core/err.h"

const char *err_str(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case ERR_NOTFOUND:
        return "not found";
    case ERR_EXISTS:
        return "already exists";
    case ERR_CONFLICT:
        return "conflict";
    case ERR_GONE:
        return "gone";
    case ERR_INVALID:
        return "invalid";
    case ERR_PARSE:
        return "parse error";
    case ERR_UNSUPPORTED:
        return "unsupported";
    default:
        if (rc < 0 && rc > -ERR_BASE)
            return strerror(-rc);
        return "unknown error";
    }
}
