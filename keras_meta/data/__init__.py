"""Episodic task generators: `tf.data` pipelines of N-way K-shot episodes."""
