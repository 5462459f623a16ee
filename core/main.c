#include "log.h"
int main(void) { log_info("main", "stub"); return 0; }
