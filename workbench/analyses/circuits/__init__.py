"""Circuits: head attribution by patching, circuit files, overlap, faithfulness, repair, SAE discovery."""
