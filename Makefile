# Entry points for people: `make run` starts Licol, `make test` runs every
# test. Both install what is missing first. The build itself is CMake's.

BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
WERROR ?= OFF
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all run test build deps-run deps-test deps-bench test-asan fuzz bench clean

all: build

deps-run:
	@tools/install-deps.sh run

deps-test:
	@tools/install-deps.sh test

deps-bench:
	@tools/install-deps.sh bench

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DLICOL_WERROR=$(WERROR) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

run: deps-run $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS) --target licol
	@mkdir -p var
	./$(BUILD)/licol serve

test: deps-test build
	tests/browser/setup.sh
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Unit and integration tests under AddressSanitizer and UBSan.
test-asan: deps-test
	$(MAKE) BUILD=build-asan BUILD_TYPE=Debug CMAKE_FLAGS="-DLICOL_SANITIZE=ON" build
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j$(JOBS) -L "unit|integration" -LE browser

# Short libFuzzer runs of every fuzz target (FUZZ_SECONDS each).
FUZZ_SECONDS ?= 30
fuzz: deps-test
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLICOL_FUZZ=ON
	cmake --build build-fuzz -j$(JOBS) --target fuzz_all
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

bench: deps-bench build
	bench/run.sh $(BUILD)

clean:
	rm -rf build build-asan build-fuzz
