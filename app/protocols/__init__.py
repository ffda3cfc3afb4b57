"""Other services' wire protocols (OpenAI, Hugging Face Inference API, Open Inference Protocol v2):
pure translation to and from our own requests and answers, no model logic."""
