"""Top-K retrieval evaluation of the teacher and the student, and the release gates' blessing."""
