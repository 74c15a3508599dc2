// Anchors the shared precompiled header target (see ssn_targets.cmake).
