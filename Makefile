# The two set-up commands of the README: `make demo` and `make test`. Both install what is missing
# (Debian packages), build in Release, and run.

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build test demo bench clean format

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The main job on built-in data: synthetic lidc-like set -> low-rank SSN and deterministic U-Net
# -> predictions -> evaluation -> out/demo/report.html. Builds only the `ssn` binary.
demo: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target ssn_cli
	$(BUILD_DIR)/ssn demo --out out/demo --overwrite

# The benchmarks of docs/performance.md, each against its Python baseline measured in the same run.
bench: build
	bash bench/run_micro.sh $(BUILD_DIR)
	bash bench/run_evaluate.sh $(BUILD_DIR)
	bash bench/run_evaluate_files.sh $(BUILD_DIR)
	bash bench/run_train.sh $(BUILD_DIR)
	bash bench/run_sample.sh $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD_DIR)
